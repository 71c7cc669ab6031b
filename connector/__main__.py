"""`python -m connector ...` from a checkout or an install: the same as the `zt-connector` command."""

import sys

from .cli import main

sys.exit(main())
