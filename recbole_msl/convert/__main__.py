"""``python -m recbole_msl.convert <source> ...``"""

import sys

from .cli import main

sys.exit(main())
