"""``python -m seaice_lib <stage> ...``: the same as the ``seaice`` command."""

import sys

from .cli import main

sys.exit(main())
