"""`python -m broker`: the same command line as the `broker` console script."""

import sys

from broker.cli import main

sys.exit(main())
