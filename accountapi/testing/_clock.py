"""A virtual clock for tests: sleeping returns at once, advances time, and is recorded."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

__all__ = ["VirtualClock"]


class VirtualClock:
    """Real time plus the sleeps taken, without waiting for any of them.

    Pass it as ``AccountClient(clock=...)``: retry waits, cool-downs and deadlines then
    behave as if the time had passed, and ``sleeps`` lists each wait the SDK asked for,
    so a test can assert the wait without spending it. One clock may serve clients on
    several threads (an application's own client and the test's, say).

    **Whose time passes.** A sleep moves the time seen by the task that slept (and by
    the tasks it starts afterwards), not by every task: concurrent calls that each wait
    out a ``Retry-After: 3`` overlap, as they would in real time, instead of adding up
    to 9 s against each other's deadlines. ``offset`` moves every task's time at once
    (``clock.offset += 60`` travels forward for all).
    """

    def __init__(self) -> None:
        self.offset = 0.0
        """Seconds added to every task's time (``clock.offset += 60`` travels forward)."""
        self.sleeps: list[float] = []
        """Each wait the SDK asked for, in seconds, in order."""
        self._lock = threading.Lock()  # sleeps from clients on different threads
        # Seconds this task (and what it started since) has slept; a new task starts
        # with its creator's, as a context variable does.
        self._slept_here: contextvars.ContextVar[float] = contextvars.ContextVar(
            f"accountapi_virtual_clock_{id(self)}", default=0.0
        )

    def monotonic(self) -> float:
        return time.monotonic() + self.offset + self._slept_here.get()

    def time(self) -> float:
        return time.time() + self.offset + self._slept_here.get()

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
        self._slept_here.set(self._slept_here.get() + max(seconds, 0.0))
        await asyncio.sleep(0)  # still a suspension point, as a real sleep would be

    @property
    def slept(self) -> float:
        """Total virtual seconds slept, by every task."""
        return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"VirtualClock(offset={self.offset:.3f}, sleeps={len(self.sleeps)})"
