import sys

from bench.connectors.run import main

sys.exit(main())
