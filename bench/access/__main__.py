import sys

from bench.access.run import main

sys.exit(main())
