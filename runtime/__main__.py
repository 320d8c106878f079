"""``python -m runtime``: run the engine in the foreground (see :mod:`runtime.launcher`);
``python -m runtime keys ...``: manage API keys (see :mod:`runtime.keys_cli`)."""

import sys

if sys.argv[1:2] == ["keys"]:
    from runtime.keys_cli import main as keys_main

    sys.exit(keys_main(sys.argv[2:]))

from runtime.launcher import main

sys.exit(main())
