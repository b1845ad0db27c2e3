"""``python -m lotsenbot`` — the same as the ``lotsenbot`` command."""

import sys

from lotsenbot.cli import main

sys.exit(main())
