"""``python -m tensorgate``: the same as the ``tensorgate`` command."""

import sys

from tensorgate.cli import main

sys.exit(main())
