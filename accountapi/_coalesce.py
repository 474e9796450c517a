"""Single-flight reads: ``profile()`` calls for one key that share one request.

A read that callers may join (``coalesce=True``) runs in a task of its own; every caller,
the first included, waits for that task with its own deadline. So a caller that gives
up or is cancelled leaves the read running for the others, and the read is cancelled
only when its last caller has left.

**Which reads may be joined.** Only a read that has not sent a request yet: one queued
for the key's slot, or not yet started. Its answer is then produced by a request sent
after the joining caller asked, so the balance it returns is never older than the
caller's call: a charge or top-up that finished before the call began shows, just as
it would for a read of the caller's own. A read already on the wire is never joined; a
caller arriving then starts (or joins) the next one. Only identical reads join: the same
key, URL, headers and retry settings.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

from ._exceptions import AccountAPIError, ClientStateError

if TYPE_CHECKING:
    from ._callstate import Call

__all__ = ["ReadIdentity", "SharedRead", "outcome_of"]

T = TypeVar("T")


class ReadIdentity:
    """What makes two reads the same (key, URL, headers, retry settings), as a dict key.

    Holds the key; its ``repr`` shows only the hint, so a frame holding it shows no key.
    """

    __slots__ = ("_hash", "_parts", "hint")

    def __init__(self, hint: str, parts: tuple[Hashable, ...]) -> None:
        self._parts = parts
        self._hash = hash(parts)
        self.hint = hint

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadIdentity) and other._parts == self._parts

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<read for {self.hint}>"


class SharedRead(Generic[T]):
    """One read that callers may join: its task, how many callers wait for it, and the
    latest of their deadlines (the read runs as long as someone may still use it)."""

    __slots__ = ("call", "deadline", "ended", "identity", "reads", "task", "waiting")

    def __init__(
        self,
        identity: ReadIdentity,
        reads: dict[ReadIdentity, SharedRead[object]],
        deadline: float | None,
    ) -> None:
        self.identity = identity
        self.reads = reads  # the table this read is listed in while joinable
        self.deadline = deadline
        self.call: Call[T] | None = None  # set when the read's call begins
        self.task: asyncio.Task[T] | None = None
        self.waiting = 1  # its first caller
        self.ended = False

    def joinable(self) -> bool:
        """Whether a new caller may join: the read is running and has sent nothing yet.

        A read that ended before sending anything (refused by a cooling-down key, out of
        time) is not joinable even before `landed()` has run: its error belongs to
        callers that came before.
        """
        call = self.call
        task = self.task
        return (
            not self.ended
            and (task is None or not task.done())
            and (call is None or call.sent == 0)
        )

    def join(self, deadline: float | None) -> None:
        """Count one more caller; the read may now run until its deadline too."""
        self.waiting += 1
        if self.deadline is not None and (deadline is None or deadline > self.deadline):
            self.deadline = deadline
            if self.call is not None:
                self.call.deadline = deadline

    def started(self, call: Call[T]) -> None:
        """The read's call began: it runs until the latest deadline of its callers."""
        self.call = call
        call.deadline = self.deadline

    def leave(self) -> None:
        """One caller is done with the read (answered, timed out or cancelled); the
        last one to leave cancels it if it is still running."""
        self.waiting -= 1
        task = self.task
        if self.waiting == 0 and task is not None and not task.done():
            self._end()
            task.cancel()

    def landed(self, task: asyncio.Task[T]) -> None:
        """The read's task finished: nobody may join it any more."""
        self._end()
        if not task.cancelled():
            task.exception()  # retrieved here: its callers may all have left

    def _end(self) -> None:
        self.ended = True
        if self.reads.get(self.identity) is self:
            del self.reads[self.identity]


def outcome_of(task: asyncio.Task[T]) -> T:
    """The read's value for one caller, or its error as that caller's own copy.

    The value is shared (a [`Profile`][accountapi.Profile] is frozen); an error is copied
    deeply for each caller, so none sees another's notes, traceback or changes.
    """
    if task.cancelled():
        raise ClientStateError("the shared read was cancelled before it answered")
    error = task.exception()
    if error is None:
        return task.result()
    if isinstance(error, AccountAPIError):
        raise copy.deepcopy(error)
    raise error
