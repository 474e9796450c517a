"""One event loop, and an end: the calls in progress of a client and how `aclose()` ends them.

The first call binds the client to its event loop; a call from any other loop raises
[`ClientStateError`][accountapi.ClientStateError] before it touches the key gate (whose
queues belong to one loop). Every call in progress is registered with its task, so
`aclose()` can end all of them at once, wherever each one is (queued for a slot, on the
wire, or waiting out a ``Retry-After``): each raises
[`ClientStateError`][accountapi.ClientStateError] and gives its slot back. A client and
every client [`with_options()`][accountapi.AccountClient.with_options] derived from it
share one `Lifecycle` (one pool, one end).
"""

from __future__ import annotations

import asyncio
from asyncio import current_task, get_running_loop
from typing import TYPE_CHECKING, Any, Final

from ._exceptions import ClientStateError

if TYPE_CHECKING:
    from ._callstate import Call
    from ._coalesce import ReadIdentity, SharedRead

__all__ = ["Lifecycle"]

_CLOSED: Final = "the client is closed; create a new AccountClient"
_OTHER_LOOP: Final = (
    "this AccountClient is bound to another event loop; "
    "create one client per event loop (e.g. per asyncio.run call)"
)
# How long aclose() waits for the calls it ended to unwind (release their key slots, end
# their spans) before it closes the pool under whatever is left.
_DRAIN_LIMIT: Final = 1.0


class Lifecycle:
    """The event loop and the calls in progress, shared by a client and every client
    [`with_options()`][accountapi.AccountClient.with_options] derived from it (one pool, one end)."""

    __slots__ = ("closing", "drained", "ended", "loop", "reads", "running")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None  # bound by the first call
        self.closing = False
        # Each call in progress: its task -> task.cancelling() when the call began, so a
        # cancellation by aclose() is told apart from the caller's own (as asyncio.timeout does).
        self.running: dict[asyncio.Task[Any], int] = {}
        self.ended: set[asyncio.Task[Any]] = set()  # cancelled by aclose(), not yet unwound
        self.drained: asyncio.Future[None] | None = None  # set when the last of those leaves
        # Shared reads that callers may still join (coalesce=True), by what they read.
        self.reads: dict[ReadIdentity, SharedRead[Any]] = {}

    def bind(self) -> None:
        """Bind the client to the running loop on its first call; refuse any other loop,
        and any call once `close()` has begun."""
        if self.closing:
            raise ClientStateError(_CLOSED)
        loop = get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif loop is not self.loop:
            raise ClientStateError(_OTHER_LOOP)

    def ended_by_close(self, task: asyncio.Task[Any], call: Call[Any]) -> ClientStateError | None:
        """The error for a call that `close()` cancelled, or None when the
        cancellation is (also) someone else's and must go on as one."""
        if task not in self.ended:
            return None
        self.ended.discard(task)
        if task.uncancel() > self.running[task]:
            return None
        error = ClientStateError(
            "the client was closed while this call was in progress; "
            f"{call.sent} request(s) had been sent"
        )
        error.attempts = call.sent
        error.key_hint = call.key.hint
        return error

    def leave(self, task: asyncio.Task[Any]) -> None:
        """A call of ``task`` ended (however it ended)."""
        self.running.pop(task, None)
        if self.ended and task in self.ended:
            # Cancelled by close() but never saw the CancelledError (the call had
            # already finished): withdraw the request so the caller's task is not hit.
            self.ended.discard(task)
            task.uncancel()
        drained = self.drained
        if drained is not None and not self.ended and not drained.done():
            drained.set_result(None)

    async def close(self) -> None:
        """End every call in progress with [`ClientStateError`][accountapi.ClientStateError] and refuse new ones.

        Waits (at most `_DRAIN_LIMIT` seconds) for the ended calls to unwind, so
        their key slots are back and their spans ended before the pool closes.
        """
        loop = self.loop
        if loop is not None and not loop.is_closed() and get_running_loop() is not loop:
            raise ClientStateError("close the client in the event loop it was used in")
        self.closing = True
        me = current_task()
        for task in list(self.running):
            if task is not me and not task.done() and task not in self.ended:
                self.ended.add(task)
                task.cancel()
        if not self.ended:
            return
        drained = self.drained = get_running_loop().create_future()
        try:
            async with asyncio.timeout(_DRAIN_LIMIT):
                await asyncio.shield(drained)
        except TimeoutError:
            pass
        finally:
            self.drained = None
