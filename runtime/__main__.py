"""``python -m runtime``: run the engine in the foreground (see :mod:`runtime.launcher`)."""

import sys

from runtime.launcher import main

sys.exit(main())
