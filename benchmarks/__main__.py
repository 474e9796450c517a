"""``python -m benchmarks [--quick]``: run the suite (see benchmarks/README.md)."""

import sys

from benchmarks.suite import main

sys.exit(main())
