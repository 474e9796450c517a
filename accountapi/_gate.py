"""The per-key gate: at most N requests in flight per API key, and a shared 429 cool-down.

The service allows 10 concurrent requests per key and answers the eleventh with 429. The
gate keeps every request for a key within that limit, queueing the rest in arrival order,
and after a 429 it holds back every queued or new request for that key until the
``Retry-After`` has passed: one cool-down per key, not one retry storm per caller.

:class:`KeyGate` is the interface; :class:`MemoryKeyGate` is the in-process default.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, Protocol, runtime_checkable

from ._clock import Clock, SystemClock
from ._exceptions import ConfigurationError

__all__ = ["GateTimeout", "KeyGate", "MemoryKeyGate"]


class GateTimeout(TimeoutError):
    """No slot (or no end of the cool-down) within the time the call had left."""


@runtime_checkable
class KeyGate(Protocol):
    """Admission control per API key, shared by every call that uses the same key."""

    async def acquire(self, key: str, timeout: float | None) -> None:
        """Wait for a free slot for ``key`` and for its cool-down to pass.

        Raises :class:`GateTimeout` if that cannot happen within ``timeout`` seconds.
        """
        ...

    def release(self, key: str) -> None:
        """Give back the slot taken by :meth:`acquire`; called once per acquire, even on
        cancellation, so it must neither wait nor raise (a shared gate sends it in the
        background)."""
        ...

    async def cool_down(self, key: str, seconds: float) -> None:
        """Hold every request for ``key`` back for ``seconds`` (a 429's Retry-After)."""
        ...


_NO_DEADLINE: Final = float("inf")
# The waiters of every key nobody has queued for: shared, always empty (see _KeyState).
_NO_WAITERS: Final[deque[tuple[asyncio.Future[None], float]]] = deque(maxlen=0)


class _KeyState:
    __slots__ = ("cool_until", "in_flight", "timer", "waiters")

    def __init__(self, in_flight: int = 1) -> None:
        # Created by the first caller to take a slot (or by a cool-down, with 0).
        self.in_flight = in_flight
        # Queued callers in arrival order, each with its loop-time deadline. Most keys
        # never queue anyone: they share the empty _NO_WAITERS until a first waiter.
        self.waiters: deque[tuple[asyncio.Future[None], float]] = _NO_WAITERS
        self.cool_until = 0.0  # 0.0: not cooling down
        # One timer per key for the earliest waiter deadline, armed lazily: queued calls
        # turn over in milliseconds while deadlines are seconds away, so it rarely fires
        # and a waiter costs no timer of its own.
        self.timer: asyncio.TimerHandle | None = None

    def expire_waiters(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waiters whose deadline passed; re-arm for the next deadline."""
        self.timer = None
        now = loop.time()
        earliest = _NO_DEADLINE
        for waiter, deadline in self.waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(GateTimeout("no free slot before the call's deadline"))
            elif deadline < earliest:
                earliest = deadline
        if earliest is not _NO_DEADLINE:
            self.timer = loop.call_at(earliest, self.expire_waiters, loop)


class MemoryKeyGate:
    """The in-process gate: a FIFO slot queue and a cool-down deadline per key.

    State exists only for keys with requests in flight, waiting or cooling down, so
    checking a million keys one after another keeps memory flat.
    """

    __slots__ = ("_clock", "_limit", "_states")

    def __init__(self, per_key: int | None = 10, *, clock: Clock | None = None) -> None:
        if per_key is not None and (isinstance(per_key, bool) or per_key < 1):
            raise ConfigurationError("per_key must be a whole number >= 1 or None")
        self._limit = per_key
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._states: dict[str, _KeyState] = {}

    @property
    def per_key(self) -> int | None:
        return self._limit

    def in_flight(self, key: str) -> int:
        """Requests for ``key`` holding a slot right now."""
        state = self._states.get(key)
        return state.in_flight if state is not None else 0

    def __len__(self) -> int:
        """Keys the gate holds state for (in flight, queued or cooling down)."""
        return len(self._states)

    def try_acquire(self, key: str) -> bool:
        """Take a slot for ``key`` if one is free right now, without waiting; True if taken.

        False when the key is at its limit, has callers queued, or is cooling down: then
        :meth:`acquire` waits in line. The client tries this first, so an uncontended call
        costs no extra coroutine.
        """
        state = self._states.get(key)
        if state is None:
            self._states[key] = _KeyState()
            return True
        limit = self._limit
        if (
            state.cool_until == 0.0
            and not state.waiters
            and (limit is None or state.in_flight < limit)
        ):
            state.in_flight += 1
            return True
        return False

    async def acquire(self, key: str, timeout: float | None) -> None:
        if self.try_acquire(key):
            return
        # Queued behind other callers, at the limit, or cooling down.
        state = self._states[key]
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        limit = self._limit
        if limit is None or (state.in_flight < limit and not state.waiters):
            state.in_flight += 1
        else:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            expires = _NO_DEADLINE if timeout is None else loop.time() + timeout
            if state.waiters is _NO_WAITERS:
                state.waiters = deque()  # never append to the shared empty one
            state.waiters.append((waiter, expires))
            timer = state.timer
            if expires is not _NO_DEADLINE and (timer is None or expires < timer.when()):
                # Usually armed once per busy key; re-armed only for an earlier deadline.
                if timer is not None:
                    timer.cancel()
                state.timer = loop.call_at(expires, state.expire_waiters, loop)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # The slot was handed to us as we gave up: pass it on.
                    self.release(key)
                else:
                    waiter.cancel()
                    self._forget_if_idle(key, state)
                raise
        try:
            await self._wait_cool_down(state, deadline)
        except BaseException:
            self.release(key)
            raise

    async def _wait_cool_down(self, state: _KeyState, deadline: float | None) -> None:
        clock = self._clock
        while True:
            until = state.cool_until
            if until == 0.0:
                return
            now = clock.monotonic()
            remaining = until - now
            if remaining <= 0:
                if state.cool_until == until:
                    state.cool_until = 0.0
                return
            if deadline is not None and now + remaining > deadline:
                raise GateTimeout(f"the key is cooling down for {remaining:.3f}s more")
            await clock.sleep(remaining)
            # Compare against the deadline we slept for rather than re-reading the clock,
            # so an injected instant sleep cannot make this loop spin.
            if state.cool_until == until:
                state.cool_until = 0.0
                return

    def release(self, key: str) -> None:
        state = self._states.get(key)
        if state is None:
            return
        waiters = state.waiters
        while waiters:
            waiter, _ = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the next in line
                return
        state.in_flight -= 1
        if state.in_flight == 0 and state.cool_until == 0.0 and state.timer is None:
            del self._states[key]  # the common case: an idle key, nothing to check
            return
        self._forget_if_idle(key, state)

    async def cool_down(self, key: str, seconds: float) -> None:
        self.cool_down_nowait(key, seconds)

    def cool_down_nowait(self, key: str, seconds: float) -> None:
        """Start or extend the key's cool-down; synchronous."""
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _KeyState(in_flight=0)
        until = self._clock.monotonic() + max(seconds, 0.0)
        if until > state.cool_until:
            state.cool_until = until

    def _forget_if_idle(self, key: str, state: _KeyState) -> None:
        if state.in_flight or (state.waiters and any(not w.done() for w, _ in state.waiters)):
            return
        if state.cool_until and state.cool_until > self._clock.monotonic():
            return
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        if self._states.get(key) is state:
            del self._states[key]

    def __repr__(self) -> str:
        return f"MemoryKeyGate(per_key={self._limit}, keys={len(self._states)})"
