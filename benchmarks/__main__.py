"""`python -m benchmarks`: every figure at once (see `benchmarks.suite`)."""

import sys

from benchmarks.suite import main

sys.exit(main())
