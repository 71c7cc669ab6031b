import sys

from bench.edge.run import main

sys.exit(main())
