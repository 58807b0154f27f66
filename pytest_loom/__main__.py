"""``python -m pytest_loom``: the ``loom`` command."""

import sys

from .cli import main

sys.exit(main())
