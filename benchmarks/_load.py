"""Load generation: a bounded pool of workers, and one round on a fresh event loop."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["Load", "LoopKind", "drive", "run_on_loop", "uvloop_available"]

T = TypeVar("T")
LoopKind = Literal["asyncio", "uvloop"]

# A round that overruns its time limit by this much is cancelled outright.
_HARD_STOP_GRACE = 15.0


@dataclass(frozen=True)
class Load:
    """What one round of load did, measured inside the client process."""

    done: int
    errors: int
    elapsed: float
    cpu_s: float
    capped: bool

    @property
    def rps(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


async def drive(
    one: Callable[[int], Awaitable[object]],
    *,
    requests: int,
    concurrency: int,
    time_limit: float,
) -> Load:
    """Run ``one(i)`` for i in ``range(requests)`` on ``concurrency`` workers, bounded in time.

    A failed call counts as an error and the worker moves on; when ``time_limit`` passes,
    workers stop taking new requests and the round is marked ``capped``.
    """
    next_index = 0
    errors = 0
    stop_at = time.perf_counter() + time_limit

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < requests and time.perf_counter() < stop_at:
            index = next_index
            next_index += 1
            try:
                await one(index)
            except Exception:
                errors += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        async with asyncio.timeout(time_limit + _HARD_STOP_GRACE):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    except TimeoutError:
        errors += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    capped = next_index < requests
    return Load(next_index, errors, elapsed, cpu, capped)


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run_on_loop(kind: LoopKind, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one round on a fresh event loop of the given kind, after a full collection."""
    gc.collect()
    if kind == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(make())
    with asyncio.Runner() as runner:
        return runner.run(make())


def level_malloc() -> None:
    """Let glibc's malloc reach the state a long-running process is usually in, before any
    variant runs, so every variant meets the same one.

    asyncio's plain transport reads each chunk into a fresh 256 KiB bytes object. While
    glibc's mmap threshold is at its initial 128 KiB, each of those is an mmap, mremap and
    munmap (raw aiohttp pays three system calls per request; the SDK reads 64 KiB and
    does not). Once the process has freed one mmapped block whole, glibc raises the
    threshold to that block's size and those reads come from the heap. Which variants
    ran before raw aiohttp decided which case it met: its CPU per request moved by up to
    a third between runs. Freeing a 1 MiB block here gives raw aiohttp its faster case
    in every run: the stricter baseline.
    """
    block = bytearray(1 << 20)
    del block
