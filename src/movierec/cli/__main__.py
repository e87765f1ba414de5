"""`python -m movierec.cli ...`: the same as the `movierec` command."""

import sys

from movierec.cli.main import main

sys.exit(main())
