"""SyncAccountClient from 8 threads against AccountClient with 8 tasks, side by side.

    python -m benchmarks.sync_client [--calls 4000] [--rounds 3]

Both call ``profile()`` with a distinct key per call (no per-key queueing) against the
loopback responder in its own process; the figure is calls per second, the median of
interleaved rounds, and the sync/async ratio. Loopback only, bounded counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

from accountapi import AccountClient, SyncAccountClient

from ._keys import bench_key
from ._servers import ResponderProcess, cpu_plan

WORKERS = 8


def _async_round(url: str, calls: int) -> float:
    async def run() -> float:
        async with AccountClient(base_url=url) as client:
            counter = iter(range(calls))

            async def worker() -> None:
                for i in counter:
                    await client.account.profile(api_key=bench_key("sync", i))

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(WORKERS)))
            return calls / (time.perf_counter() - started)

    return asyncio.run(run())


def _sync_round(url: str, calls: int) -> float:
    with SyncAccountClient(base_url=url) as client:
        lock = threading.Lock()
        counter = iter(range(calls))

        def worker() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                client.account.profile(api_key=bench_key("sync", i))

        client.account.profile(api_key=bench_key("sync", 0))  # start the loop thread
        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return calls / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sync_client")
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    sync_rates: list[float] = []
    async_rates: list[float] = []
    with ResponderProcess(cpu_plan(pin=True)) as responder:
        for _ in range(args.rounds):
            async_rates.append(_async_round(responder.url, args.calls))
            sync_rates.append(_sync_round(responder.url, args.calls))
    a, s = statistics.median(async_rates), statistics.median(sync_rates)
    print(f"AccountClient, {WORKERS} tasks:       {a:8,.0f} calls/s")
    print(f"SyncAccountClient, {WORKERS} threads: {s:8,.0f} calls/s  ({s / a:.2f}x async)")


if __name__ == "__main__":
    main()
