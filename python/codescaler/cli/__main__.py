"""``python -m codescaler.cli``: the ``codescaler`` command (as ``python -m codescaler``)."""

import sys

from . import main

sys.exit(main())
