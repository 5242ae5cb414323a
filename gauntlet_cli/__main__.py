"""`python -m gauntlet_cli` runs the `gauntlet` command."""

import sys

from gauntlet_cli.main import main

sys.exit(main())
