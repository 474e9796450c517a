"""Time, injectable: the waits a test wants to skip go through a [`Clock`][accountapi.gates.Clock].

A client's ``clock=`` ([`accountapi.testing.VirtualClock`][accountapi.testing.VirtualClock]
in tests) decides, exactly:

- **virtual** (`Clock.sleep()`, `Clock.monotonic()`): the wait before each retry
  (backoff or ``Retry-After``); the in-process gate's 429 cool-down
  ([`MemoryKeyGate`][accountapi.gates.MemoryKeyGate]); the whole call's deadline
  (``Timeout.total`` is counted on `Clock.monotonic()`, so virtual waits spend it);
  ``Retry-After`` HTTP-dates (read against `Clock.time()`).
- **real** (the event loop's timers): one attempt's time limits (``Timeout.attempt``,
  ``connect``, ``read``: the network is real); a queue's wait for one of the key's slots
  (``loop.call_at``: slots are freed by real requests finishing); the wait of a caller
  joined to a shared read; the sync client's bound on a call (``GRACE``); and every
  wait of [`RedisKeyGate`][accountapi.gates.RedisKeyGate] (lease renewals, polling,
  cool-downs read from Redis, whose own clock is the one that counts).

tests/test_clock.py shows each side with a `VirtualClock` over real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "default_clock", "override_default_clock"]


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
    """The real clocks and `asyncio.sleep()`."""

    __slots__ = ()

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


# Test-only: the clock of clients built without ``clock=`` while a test overrides it.
_default_override: Clock | None = None


def default_clock() -> Clock:
    """The clock of a client built without ``clock=``: the system clock, unless a test
    has put another in place with `override_default_clock()`."""
    return _default_override if _default_override is not None else SystemClock()


@contextlib.contextmanager
def override_default_clock(clock: Clock) -> Iterator[None]:
    """Test-only: every client built without ``clock=`` inside the block uses ``clock``.

    Process-wide rather than a context variable, on purpose: the application under test
    may build its client on another thread (FastAPI's ``TestClient`` runs the lifespan on
    its own; ``SyncAccountClient`` on its loop thread). The previous clock is put back on
    exit, also when the block raises. ``accountapi_defaults`` (the pytest plugin) uses it.
    """
    global _default_override
    previous, _default_override = _default_override, clock
    try:
        yield
    finally:
        _default_override = previous
