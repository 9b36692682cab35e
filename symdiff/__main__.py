"""``python -m symdiff``: the same command line as the ``symdiff`` console script."""

import sys

from symdiff.cli import main

sys.exit(main())
