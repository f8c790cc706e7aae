"""`python -m relaykit` (and the shiv zipapp entry point)."""

import sys

from .cli.app import main

sys.exit(main())
