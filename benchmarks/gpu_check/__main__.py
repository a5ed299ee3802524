"""``python -m benchmarks.gpu_check``: see the package's docstring."""

import sys

from .run import main

sys.exit(main())
