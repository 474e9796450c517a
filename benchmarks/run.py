"""Run the benchmark suite: ``python benchmarks/run.py [--quick]`` (or ``python -m benchmarks``)."""

import sys
from pathlib import Path


def _main() -> int:
    if not __package__:  # run as a script: make the package importable
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.suite import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
