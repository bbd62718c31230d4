"""Let ``python -m broadcaster.cli ARGS`` run the ``broadcaster`` command."""

import sys

from . import main

sys.exit(main())
