"""Time, injectable: the SDK reads clocks and sleeps only through a :class:`Clock`.

Tests (and :class:`accountapi.testing.VirtualClock`) replace it so retry waits, cool-downs
and deadlines can be asserted without waiting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the SDK needs of time: a monotonic reading, wall time for HTTP-dates, and sleep."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences matter."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch, to read ``Retry-After`` HTTP-dates against."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clocks and :func:`asyncio.sleep`."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
