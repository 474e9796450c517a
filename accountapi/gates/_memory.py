"""The in-process key gate, the default: [`MemoryKeyGate`][accountapi.gates.MemoryKeyGate], and the fast path the client
takes through it (`fast_acquire()`).
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Callable
from typing import Final

from accountapi._clock import Clock, SystemClock
from accountapi._exceptions import ConfigurationError

from ._protocol import MAX_COOL_DOWN, GateTimeout, KeyCoolingDown, KeyGate

__all__ = ["MemoryKeyGate", "fast_acquire"]


def fast_acquire(gate: KeyGate) -> Callable[[str], bool] | None:
    """The gate's synchronous way to take a free slot, if it has one the client may use.

    Only a [`MemoryKeyGate`][accountapi.gates.MemoryKeyGate] whose ``acquire`` is not overridden: its
    ``_try_acquire`` then takes exactly the slots ``acquire`` would take without waiting,
    and a call that gets ``False`` goes on to ``acquire`` and queues. An uncontended call
    then costs no coroutine of the gate's.
    """
    if isinstance(gate, MemoryKeyGate) and type(gate).acquire is MemoryKeyGate.acquire:
        return gate._try_acquire
    return None


_NO_DEADLINE: Final = float("inf")


class _KeyState:
    __slots__ = ("cool_until", "in_flight", "timer", "waiters")

    def __init__(self, in_flight: int = 1) -> None:
        # Created by the first caller to take a slot (or by a cool-down, with 0).
        self.in_flight = in_flight
        # Queued callers in arrival order, each with its loop-time deadline; None until
        # a first caller queues (most keys never queue anyone).
        self.waiters: deque[tuple[asyncio.Future[None], float]] | None = None
        self.cool_until = 0.0  # 0.0: not cooling down
        # One timer per key for the earliest waiter deadline, armed lazily: queued calls
        # turn over in milliseconds while deadlines are seconds away, so it rarely fires
        # and a waiter costs no timer of its own.
        self.timer: asyncio.TimerHandle | None = None

    def expire_waiters(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waiters whose deadline passed; re-arm for the next deadline."""
        self.timer = None
        if not self.waiters:
            return
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

    State exists only for keys with requests in flight, waiting or cooling down (and is
    dropped once a cool-down has ended), so checking a million keys one after another
    keeps memory flat.
    """

    __slots__ = ("_clock", "_cooling", "_limit", "_states")

    def __init__(self, per_key: int | None = 10, *, clock: Clock | None = None) -> None:
        if per_key is not None and (isinstance(per_key, bool) or per_key < 1):
            raise ConfigurationError("per_key must be a whole number >= 1 or None")
        self._limit = per_key
        self._clock: Clock = clock if clock is not None else SystemClock()
        # Per key with slots held, queued callers or a cool-down: how many slots it holds
        # while that is all there is to know (most keys: one call, nothing else), else
        # its full state. A key with nothing of these has no entry.
        self._states: dict[str, int | _KeyState] = {}
        # (cool-down end, key) for every cool-down started; swept as they end, so that a
        # key nobody calls again does not keep its state.
        self._cooling: list[tuple[float, str]] = []

    @property
    def per_key(self) -> int | None:
        return self._limit

    async def in_flight(self, key: str) -> int:
        """Requests for ``key`` holding a slot right now."""
        entry = self._states.get(key)
        if isinstance(entry, _KeyState):
            return entry.in_flight
        return entry or 0

    def __len__(self) -> int:
        """Keys the gate holds state for (in flight, queued or cooling down)."""
        return len(self._states)

    def _try_acquire(self, key: str) -> bool:
        """Take a slot for ``key`` if one is free right now, without waiting; True if taken.

        False when the key is at its limit, has callers queued, or is cooling down: then
        `acquire()` waits in line (see `fast_acquire()`).
        """
        states = self._states
        entry = states.get(key)
        if entry is None:
            states[key] = 1
            return True
        limit = self._limit
        if isinstance(entry, int):
            if limit is None or entry < limit:
                states[key] = entry + 1
                return True
            return False
        if (
            entry.cool_until == 0.0
            and not entry.waiters
            and (limit is None or entry.in_flight < limit)
        ):
            entry.in_flight += 1
            return True
        return False

    def _state(self, key: str) -> _KeyState:
        """The key's full state, made from its plain count (or from nothing) if need be."""
        entry = self._states.get(key)
        if isinstance(entry, _KeyState):
            return entry
        state = self._states[key] = _KeyState(in_flight=entry or 0)
        return state

    async def acquire(
        self, key: str, timeout: float | None, *, max_cool_down: float | None = None
    ) -> None:
        if self._try_acquire(key):
            return
        # Queued behind other callers, at the limit, or cooling down.
        state = self._state(key)
        clock = self._clock
        now = clock.monotonic()
        deadline = None if timeout is None else now + timeout
        # A cool-down longer than this call may wait fails it now, not after queueing.
        self._check_cool_down(state, now, timeout, max_cool_down)
        limit = self._limit
        if limit is None or (state.in_flight < limit and not state.waiters):
            state.in_flight += 1
        else:
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[None] = loop.create_future()
            expires = _NO_DEADLINE if timeout is None else loop.time() + timeout
            waiters = state.waiters
            if waiters is None:
                waiters = state.waiters = deque()
            waiters.append((waiter, expires))
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
            await self._wait_cool_down(state, deadline, max_cool_down)
        except BaseException:
            self.release(key)
            raise

    def _check_cool_down(
        self,
        state: _KeyState,
        now: float,
        timeout: float | None,
        max_cool_down: float | None,
    ) -> None:
        """Raise [`KeyCoolingDown`][accountapi.gates.KeyCoolingDown] if the key's cool-down outlasts what the call may wait."""
        if state.cool_until == 0.0:
            return
        left = state.cool_until - now
        if left <= 0:
            return
        if (timeout is not None and left > timeout) or (
            max_cool_down is not None and left > max_cool_down
        ):
            raise KeyCoolingDown(left)

    async def _wait_cool_down(
        self, state: _KeyState, deadline: float | None, max_cool_down: float | None
    ) -> None:
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
            self._check_cool_down(
                state, now, None if deadline is None else deadline - now, max_cool_down
            )
            await clock.sleep(remaining)
            # Compare against the deadline we slept for rather than re-reading the clock,
            # so an injected instant sleep cannot make this loop spin.
            if state.cool_until == until:
                state.cool_until = 0.0
                return

    def release(self, key: str) -> None:
        states = self._states
        state = states.get(key)
        if state is None:
            return
        if isinstance(state, int):  # slots held, nothing queued or cooling: just count
            if state > 1:
                states[key] = state - 1
            else:
                del states[key]
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
        self._cool_down_nowait(key, seconds)

    def _cool_down_nowait(self, key: str, seconds: float) -> None:
        """Start or extend the key's cool-down (at most [`MAX_COOL_DOWN`][accountapi.gates.MAX_COOL_DOWN]); synchronous."""
        now = self._clock.monotonic()
        self._sweep(now)
        state = self._state(key)
        until = now + min(max(seconds, 0.0), MAX_COOL_DOWN)
        if until > state.cool_until:
            state.cool_until = until
            heapq.heappush(self._cooling, (until, key))

    def _sweep(self, now: float) -> None:
        """Drop the state of keys whose cool-down has ended and that nothing else holds."""
        cooling = self._cooling
        while cooling and cooling[0][0] <= now:
            until, key = heapq.heappop(cooling)
            state = self._states.get(key)
            if isinstance(state, _KeyState) and state.cool_until == until:
                state.cool_until = 0.0
                self._forget_if_idle(key, state)

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
