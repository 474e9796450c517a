"""The key gate protocol: what a gate does ([`KeyGate`][accountapi.gates.KeyGate]), what its ``acquire`` raises
([`GateTimeout`][accountapi.gates.GateTimeout], [`KeyCoolingDown`][accountapi.gates.KeyCoolingDown]), and the longest cool-down ([`MAX_COOL_DOWN`][accountapi.gates.MAX_COOL_DOWN]).

The service allows 10 concurrent requests per key and answers the eleventh with 429. A
gate keeps every request for a key within that limit, queueing the rest in arrival order,
and after a 429 it holds back every queued or new request for that key until the
``Retry-After`` has passed: one cool-down per key, not one retry storm per caller.
"""

from __future__ import annotations

from typing import Final, Protocol, runtime_checkable

from accountapi._exceptions import AccountAPIError

__all__ = ["MAX_COOL_DOWN", "GateTimeout", "KeyCoolingDown", "KeyGate"]

MAX_COOL_DOWN: Final = 60.0
"""The longest a gate holds a key back after one 429, in seconds, whatever its Retry-After.

A cool-down protects the service from calls it asked us not to make yet; it is not a
promise to stay away. A longer Retry-After (a broken gateway's ``86400``) then costs one
request per key a minute (which, if still limited, starts a new cool-down) instead of
parking the key for a day.
"""


class GateTimeout(AccountAPIError, TimeoutError):
    """No slot (or no end of the cool-down) within the time the call had left.

    A custom [`KeyGate`][accountapi.gates.KeyGate] raises it (or [`KeyCoolingDown`][accountapi.gates.KeyCoolingDown]) from ``acquire``;
    the client turns it into [`APITimeoutError`][accountapi.APITimeoutError], so a caller of the
    client never sees it. Like every public exception it is an
    [`AccountAPIError`][accountapi.AccountAPIError]; it is also a `TimeoutError`, as before.
    """


class KeyCoolingDown(GateTimeout):
    """The key is cooling down after a 429 for longer than the call may wait.

    Raised by ``acquire`` at once, without waiting; ``retry_after`` is the time left (in
    seconds). The client turns it into [`RateLimitError`][accountapi.RateLimitError] with that
    ``retry_after`` and nothing sent.
    """

    retry_after: float

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"the key is cooling down after a 429 for {retry_after:.3f}s more")
        self.retry_after = retry_after


# Tracebacks, reprs and pickles name the gate signals by their public path
# (``accountapi.gates.GateTimeout``), as ``accountapi`` does for its own exceptions; set
# here, where they are defined, so it holds before (or without) that module's import.
GateTimeout.__module__ = KeyCoolingDown.__module__ = "accountapi.gates"


@runtime_checkable
class KeyGate(Protocol):
    """Admission control per API key, shared by every call that uses the same key."""

    async def acquire(
        self, key: str, timeout: float | None, *, max_cool_down: float | None = None
    ) -> None:
        """Wait for a free slot for ``key`` and for its cool-down to pass.

        Raises [`KeyCoolingDown`][accountapi.gates.KeyCoolingDown] at once when the key's cool-down outlasts
        ``timeout`` or ``max_cool_down`` seconds (the most this call may wait for one),
        and [`GateTimeout`][accountapi.gates.GateTimeout] when no slot frees up within ``timeout`` seconds.
        """
        ...

    def release(self, key: str) -> None:
        """Give back the slot taken by `acquire()`; called once per acquire, even on
        cancellation, so it must neither wait nor raise (a shared gate sends it in the
        background)."""
        ...

    async def cool_down(self, key: str, seconds: float) -> None:
        """Hold every request for ``key`` back for ``seconds`` (a 429's Retry-After),
        at most [`MAX_COOL_DOWN`][accountapi.gates.MAX_COOL_DOWN]. The client calls it while still holding the slot
        of the request that drew the 429, before `release()`."""
        ...

    async def in_flight(self, key: str) -> int:
        """Requests for ``key`` holding a slot right now (across processes, for a shared gate)."""
        ...
