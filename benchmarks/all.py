"""Every measurement the README quotes, in one run: ``python -m benchmarks.all``.

Runs, one after the other so that none disturbs another's clock or CPU:

1. ``python -m benchmarks`` (full): loopback throughput, decode, retry accuracy, many keys
   (``results/latest.json``, ``results/throughput.png``);
2. ``python -m benchmarks.instructions``: instructions per request under callgrind, with
   the breakdown of what ``profile(api_key=k)`` costs over raw aiohttp
   (``results/instructions.json``; skipped with a note when valgrind is missing);
3. ``python -m benchmarks.https_grid``: HTTPS with 20 and 80 ms of latency at
   concurrency 64, 256 and 1,024 (``results/https_grid.json``).

Each writes to ``results/runs/`` (untracked); ``--record`` passes on, to update the
committed figures in ``results/``. About 25 minutes on a 2-core VM. The exit status is the first non-zero one of the three
(a section that crashed; a missed target is reported, never an error).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = ["main"]

_ROOT: Final = Path(__file__).resolve().parent.parent
STEPS: Final = ("benchmarks", "benchmarks.instructions", "benchmarks.https_grid")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    extra = [arg for arg in argv if arg != "--record"]
    if extra:
        print("python -m benchmarks.all takes only --record; run the parts on their own for more")
        return 2
    status = 0
    for module in STEPS:
        print(f"\n##### python -m {module}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", module, *argv], cwd=_ROOT)
        print(
            f"##### {module}: exit {code} after {time.perf_counter() - started:.0f} s", flush=True
        )
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
