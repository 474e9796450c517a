"""A virtual clock for tests: sleeping returns at once, advances time, and is recorded."""

from __future__ import annotations

import asyncio
import threading
import time

__all__ = ["VirtualClock"]


class VirtualClock:
    """Real time plus every sleep taken, without waiting for any of them.

    Pass it as ``AccountClient(clock=...)``: retry waits, cool-downs and deadlines then
    behave as if the time had passed, and ``sleeps`` lists each wait the SDK asked for,
    so a test can assert the wait without spending it. One clock may serve clients on
    several threads (an application's own client and the test's, say).
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()  # sleeps from clients on different threads

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.offset += max(seconds, 0.0)
        await asyncio.sleep(0)  # still a suspension point, as a real sleep would be

    @property
    def slept(self) -> float:
        """Total virtual seconds slept."""
        return sum(self.sleeps)

    def __repr__(self) -> str:
        return f"VirtualClock(offset={self.offset:.3f}, sleeps={len(self.sleeps)})"
