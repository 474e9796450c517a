"""The machine under the runs: CPU used by other processes, and the C allocator's state.

On a shared two-core machine another process's test run can halve a client's speed; a
round records how much CPU went to processes other than the client and the server.
"""

from __future__ import annotations

import os
import time

__all__ = ["busy_cpu_seconds", "other_cpu_now", "settle_allocator", "wait_for_quiet"]


def settle_allocator() -> None:
    """Put glibc's malloc in the state a long-running process reaches, before measuring.

    asyncio's selector transport reads each response with ``sock.recv(256 KiB)``. glibc
    serves allocations that size with a fresh ``mmap`` until its dynamic mmap threshold
    has risen past them, which happens only once a chunk that large is freed unshrunk.
    Whether that happened early in a short benchmark process is luck: measured here, the
    same 20,000 requests took 7,100 page faults or 47,100 (two per request, each ``recv``
    buffer mapped, touched and unmapped) and up to 60% more client CPU, for raw aiohttp
    and the SDK alike. Allocating and freeing one such chunk raises the threshold now,
    as any long-running server's traffic does sooner or later, so every run measures the
    same allocator. Called first thing by every benchmark process; tests never need it.
    """
    bytearray(512 * 1024)  # allocated and freed at once, for its effect on malloc


def busy_cpu_seconds() -> float | None:
    """CPU seconds spent busy on all CPUs since boot (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # guest time is already counted in user; steal is time we did not get
    busy = sum(fields[:8]) - idle
    return busy / os.sysconf("SC_CLK_TCK")


def other_cpu_now(sample: float = 2.0) -> float | None:
    """Cores' worth of CPU used by the rest of the machine over ``sample`` seconds (we idle)."""
    start = busy_cpu_seconds()
    mine = time.process_time()
    time.sleep(sample)
    end = busy_cpu_seconds()
    if start is None or end is None:
        return None
    return max(0.0, (end - start) - (time.process_time() - mine)) / sample


def wait_for_quiet(max_wait: float, threshold: float = 0.1) -> float | None:
    """Wait (at most ``max_wait`` s) until other processes use under ``threshold`` of a core.

    Returns the last reading, so the run can record how busy the machine was.
    """
    deadline = time.monotonic() + max_wait
    while True:
        load = other_cpu_now()
        if load is None or load < threshold or time.monotonic() >= deadline:
            return load
