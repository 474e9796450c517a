"""The client side of the many-keys run, alone in its process so its peak RSS is its own.

``python -m benchmarks.manykeys_child --url URL --count N --mode balances|profile``
sends one request per key for ``N`` distinct keys (made lazily, never held in a list)
and prints one JSON line: wall time, outcomes, RSS after imports and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from accountapi import AccountClient

from ._keys import bench_key, bench_keys
from ._load import drive
from ._machine import settle_allocator

__all__ = ["main"]

PREFIX = "many"


def _rss_kb() -> int:
    """Resident set size now, in KiB (Linux /proc; falls back to the peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return _peak_rss_kb()


def _peak_rss_kb() -> int:
    """This process's peak RSS in KiB.

    Linux's ``ru_maxrss`` survives ``execve``: a child forked from a big parent would
    report the parent's size. ``VmHWM`` belongs to the new address space, so use it.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS reports bytes


async def _balances(url: str, count: int, concurrency: int, time_limit: float) -> dict[str, Any]:
    done = errors = 0
    async with AccountClient(base_url=url) as client:
        t0 = time.perf_counter()
        results = client.balances(bench_keys(PREFIX, count), concurrency=concurrency)
        async for result in results:
            done += 1
            if not result.ok:
                errors += 1
            if time.perf_counter() - t0 > time_limit:
                break
        elapsed = time.perf_counter() - t0
    return {"done": done, "errors": errors, "elapsed_s": elapsed}


async def _profiles(url: str, count: int, concurrency: int, time_limit: float) -> dict[str, Any]:
    async with AccountClient(base_url=url) as client:
        profile = client.account.profile

        async def one(index: int) -> object:
            return await profile(api_key=bench_key(PREFIX, index))

        load = await drive(one, requests=count, concurrency=concurrency, time_limit=time_limit)
    return {"done": load.done, "errors": load.errors, "elapsed_s": load.elapsed}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.manykeys_child")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--mode", choices=["balances", "profile"], required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    settle_allocator()
    if not args.url.startswith("http://127.0.0.1:"):
        parser.error("loopback URLs only")
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    run = _balances if args.mode == "balances" else _profiles
    baseline = _rss_kb()
    cpu0 = time.process_time()
    outcome = asyncio.run(run(args.url, args.count, args.concurrency, args.time_limit))
    outcome.update(
        count=args.count,
        cpu_s=time.process_time() - cpu0,
        mode=args.mode,
        rss_start_kb=baseline,
        rss_end_kb=_rss_kb(),
        peak_rss_kb=_peak_rss_kb(),
    )
    print(json.dumps(outcome), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
