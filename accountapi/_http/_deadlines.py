"""Attempt deadlines with one timer for every attempt in flight, instead of one each.

aiohttp enforces a per-request ``total`` timeout by arming and cancelling a loop timer
for every request, and ``asyncio.timeout()`` does the same. Counted with callgrind, that
is about 25,000 CPU instructions per request (6-7% of a whole request to a loopback
server). Here each attempt registers its task and deadline in a dict, and a single timer,
armed for the earliest deadline, cancels the attempts that outlive theirs. Attempts end
long before their deadline almost always, so the timer fires rarely and re-arms for the
next earliest.

The cancellation follows `asyncio.timeout()`'s rules: only a cancellation this
registry caused, and no other cancellation of the task meanwhile, becomes a timeout;
`AttemptDeadlines.expired()` undoes the cancel request (``Task.uncancel``) so that
structured concurrency around the caller still sees a correct count.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

__all__ = ["AttemptDeadlines"]

_NEVER: Final = float("inf")


class AttemptDeadlines:
    """The deadlines of the attempts in flight on one event loop."""

    __slots__ = ("_active", "_expired", "_loop", "_timer", "_timer_at")

    def __init__(self) -> None:
        # task -> (loop-time deadline, task.cancelling() when the attempt began)
        self._active: dict[asyncio.Task[object], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[object]] = set()  # cancelled here, not yet seen
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _NEVER

    def enter(self, task: asyncio.Task[Any], seconds: float) -> None:
        """Start the attempt ``task`` (the current task) runs, to be cancelled after
        ``seconds``; then pass ``task`` to `expired()` and `leave()`."""
        loop = task.get_loop()
        if loop is not self._loop:
            self.close()  # a new loop: nothing from the old one can still be in flight
            self._loop = loop
        deadline = loop.time() + seconds
        self._active[task] = (deadline, task.cancelling())
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._fire)
            self._timer_at = deadline

    def expired(self, task: asyncio.Task[object]) -> bool:
        """Whether the ``CancelledError`` the attempt got is its deadline passing.

        Call it from the attempt's ``except CancelledError`` (before `leave()`). True
        only if this registry cancelled the task and nothing else cancelled it too; the
        registry's own cancel request is then withdrawn.
        """
        if task not in self._expired:
            return False
        self._expired.discard(task)
        began = self._active[task][1]
        return task.uncancel() <= began

    def leave(self, task: asyncio.Task[object]) -> None:
        """End the attempt (in a ``finally``): its deadline no longer applies."""
        self._active.pop(task, None)
        if task in self._expired:
            # Cancelled for its deadline, but no CancelledError reached expired(): code
            # below turned it into something else. Withdraw the request all the same, so
            # the task's cancel count is what it was before the attempt.
            self._expired.discard(task)
            task.uncancel()

    def close(self) -> None:
        """Disarm the timer and forget every attempt (the client is closing)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = _NEVER
        self._active.clear()
        self._expired.clear()

    def __len__(self) -> int:
        """Attempts in flight with a deadline."""
        return len(self._active)

    def _fire(self) -> None:
        """Cancel the attempts past their deadline; re-arm for the earliest one left."""
        self._timer = None
        self._timer_at = _NEVER
        loop = self._loop
        if loop is None:  # pragma: no cover - closed while the callback was queued
            return
        now = loop.time()
        earliest = _NEVER
        for task, (deadline, _) in self._active.items():
            if deadline <= now:
                if task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
            elif deadline < earliest:
                earliest = deadline
        if earliest < _NEVER:
            self._timer = loop.call_at(earliest, self._fire)
            self._timer_at = earliest

    def __repr__(self) -> str:
        return f"AttemptDeadlines(active={len(self._active)})"
