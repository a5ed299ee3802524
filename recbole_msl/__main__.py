"""``python -m recbole_msl``: the ``recbole-msl`` command."""

import sys

from .cli import main

sys.exit(main())
