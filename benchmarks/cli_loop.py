"""`accountapi balances` on uvloop against the library on asyncio's default loop.

    python -m benchmarks.cli_loop [--keys 20000] [--rounds 3]

One emulator process (``python -m accountapi.testing``) on loopback serves every run.
Interleaved rounds of: the CLI as installed (uvloop when present), the CLI with
``ACCOUNTAPI_LOOP=asyncio``, and a script that runs ``client.balances()`` with the same
concurrency on asyncio's default loop, in an order rotated round by round. Keys per second is the CLI's own figure from its
summary (start-up excluded) and the script's time around the same loop; the median of
the rounds is printed. So is each process's CPU time (user + system, start-up and
reading the keys included) per key: steadier than keys/s on a busy machine, and what
the CLI adds to the library's work per key. Loopback only, bounded counts.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from accountapi._config import DEFAULT_CONCURRENCY

_RATE: Final = re.compile(r"\(([\d,]+) keys/s\)")
_LIBRARY: Final = """
import asyncio, sys, time
from collections.abc import Callable
from pathlib import Path
from accountapi import AccountClient, Limits

async def main(url, path, concurrency):
    keys = Path(path).read_text().split()
    async with AccountClient(base_url=url, limits=Limits(max_connections=concurrency)) as client:
        started = time.perf_counter()
        async with client.balances(keys, concurrency=concurrency) as results:
            async for _ in results:
                pass
        print(int(len(keys) / (time.perf_counter() - started)))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def _child_cpu() -> float:
    """CPU seconds (user + system) of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cli(url: str, keys: Path, *, loop: str | None) -> tuple[int, float]:
    env = dict(os.environ)
    if loop is not None:
        env["ACCOUNTAPI_LOOP"] = loop
    cpu = _child_cpu()
    out = subprocess.run(
        [
            *(sys.executable, "-m", "accountapi", "balances", str(keys)),
            *("--base-url", url, "--format", "jsonl", "--no-progress"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    cpu = _child_cpu() - cpu
    match = _RATE.search(out.stderr)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"balances failed ({out.returncode}): {out.stderr[-300:]}")
    return int(match[1].replace(",", "")), cpu


def _library(url: str, keys: Path) -> tuple[int, float]:
    cpu = _child_cpu()
    out = subprocess.run(
        [sys.executable, "-c", _LIBRARY, url, str(keys), str(DEFAULT_CONCURRENCY)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return int(out.stdout.strip()), _child_cpu() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cli_loop")
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys.txt"
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "accountapi.testing", "--port", "0"),
                *("--keys", str(args.keys), "--keys-file", str(keys)),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stderr is not None
            banner = server.stderr.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+", banner)
            if match is None:
                raise RuntimeError(f"the emulator did not start: {banner}")
            url = match[0]
            runs: dict[str, Callable[[], tuple[int, float]]] = {
                "cli uvloop": lambda: _cli(url, keys, loop=None),
                "cli asyncio": lambda: _cli(url, keys, loop="asyncio"),
                "library": lambda: _library(url, keys),
            }
            rates: dict[str, list[int]] = {name: [] for name in runs}
            cpus: dict[str, list[float]] = {name: [] for name in runs}
            names = list(runs)
            for round_ in range(args.rounds):
                # Rotated round by round (A B C, B C A, ...): whichever runs first after
                # the previous round's run meets the emulator still winding that one down.
                for name in names[round_ % 3 :] + names[: round_ % 3]:
                    rate, cpu = runs[name]()
                    rates[name].append(rate)
                    cpus[name].append(cpu / args.keys * 1e6)
        finally:
            server.terminate()
            server.wait(timeout=10)
    base = statistics.median(rates["library"])
    base_cpu = statistics.median(cpus["library"])
    print(f"{args.keys} keys, concurrency {DEFAULT_CONCURRENCY}, median of {args.rounds} rounds")
    for name, values in rates.items():
        median = statistics.median(values)
        each = ", ".join(f"{value:,}" for value in values)
        print(
            f"{name:12s} {median:8,.0f} keys/s  {median / base:5.2f}x library on asyncio"
            f"  (rounds: {each})"
        )
    print("CPU per key (user + system, whole process, start-up included), median of the rounds")
    for name, per_key in cpus.items():
        cpu = statistics.median(per_key)
        each = ", ".join(f"{value:.1f}" for value in per_key)
        print(
            f"{name:12s} {cpu:8.1f} us/key  {cpu - base_cpu:+6.1f} us/key vs library"
            f"  (rounds: {each})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
