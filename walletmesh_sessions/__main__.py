"""``python -m walletmesh_sessions``: the command-line tool."""

import sys

from ._tools.cli import main

sys.exit(main())
