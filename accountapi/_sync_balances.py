"""The sync ``balances()`` iterator's two halves: keys read in the caller's thread, results stepped on the loop.

A [`SyncAccountClient.balances()`][accountapi.SyncAccountClient.balances] run hands a `KeyFeed` to the async
stream as its input, and takes results one `BalanceSteps.step()` at a time on the loop
thread; a step answers `HUNGRY` when the workers wait for keys the caller's thread must
read first, and `END` when every key has its result.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._balance_results import BalanceResult

__all__ = ["END", "HUNGRY", "BalanceSteps", "KeyFeed"]


class KeyFeed:
    """The keys of a sync ``balances()`` run: read in the caller's thread a batch at a
    time, handed to the loop's workers as an async iterator.

    A worker that finds no key waits; the caller's thread is told (``HUNGRY``), reads
    the next batch from the iterable and hands it over. So a slow or blocking iterable
    (a database cursor, a queue) holds up only its own caller, never the loop thread
    every other thread's calls run on, and a thread-bound cursor is read by its thread.
    """

    __slots__ = (
        "_arrived",
        "_batch",
        "_buffer",
        "_ended",
        "_failure",
        "_reader",
        "_source",
        "_staged",
        "_wanted",
    )

    def __init__(self, keys: Iterable[str], batch: int) -> None:
        self._source = keys
        self._reader: Iterator[str] | None = None
        self._batch = batch
        self._staged: deque[str] = deque()  # read by the caller's thread, not yet handed over
        self._buffer: deque[str] = deque()
        self._ended = False
        self._failure: Exception | None = None
        self._arrived: asyncio.Future[None] | None = None  # workers wait on it for keys
        self._wanted: asyncio.Future[None] | None = None  # the step waits on it for hunger

    # -- the caller's thread ----------------------------------------------------------

    def read(self) -> tuple[bool, Exception | None]:
        """Stage up to one batch of keys from the iterable; whether it ended, how it failed.

        The keys go straight from the iterable into ``_staged`` (no local of this frame
        holds one: an error tracker records the locals of the frames an exception of the
        iterable passed through).
        """
        staged = self._staged
        before = len(staged)
        try:
            if self._reader is None:
                self._reader = iter(self._source)
            staged.extend(itertools.islice(self._reader, self._batch))
        except Exception as exc:  # the caller's iterable failed: the run reports it
            return True, exc
        return len(staged) - before < self._batch, None

    # -- the loop --------------------------------------------------------------------

    def put(self, ended: bool, failure: Exception | None) -> None:
        """Take over the batch the caller's thread staged; wake the workers waiting."""
        staged, buffer = self._staged, self._buffer
        while staged:
            buffer.append(staged.popleft())
        self._ended = ended
        self._failure = failure
        arrived = self._arrived
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    def hungry(self) -> asyncio.Future[None]:
        """A future done once a worker waits for keys (at once if one already does)."""
        wanted = self._wanted
        if wanted is None or wanted.done():
            wanted = self._wanted = asyncio.get_running_loop().create_future()
        arrived = self._arrived
        if arrived is not None and not arrived.done():
            wanted.set_result(None)
        return wanted

    def __aiter__(self) -> KeyFeed:
        return self

    async def __anext__(self) -> str:
        while not self._buffer:
            if self._ended:
                failure, self._failure = self._failure, None
                if failure is not None:
                    raise failure
                raise StopAsyncIteration
            arrived = self._arrived
            if arrived is None or arrived.done():
                arrived = self._arrived = asyncio.get_running_loop().create_future()
            wanted = self._wanted
            if wanted is not None and not wanted.done():
                wanted.set_result(None)
            await arrived
        return self._buffer.popleft()


END: Final = object()
HUNGRY: Final = object()


class BalanceSteps:
    """The loop side of a sync ``balances()`` iterator: one step per result."""

    __slots__ = ("feed", "next", "stream")

    def __init__(self, stream: AsyncIterator[BalanceResult], feed: KeyFeed | None) -> None:
        self.stream = stream
        self.feed = feed
        self.next: asyncio.Task[BalanceResult] | None = None

    async def step(self, batch: tuple[bool, Exception | None] | None) -> object:
        """The next result, or ``END``, or ``HUNGRY`` when the workers wait for keys
        the caller's thread must read first (``batch`` hands over the last read)."""
        feed = self.feed
        if feed is None:
            try:
                return await self.stream.__anext__()
            except StopAsyncIteration:
                return END
        if batch is not None:
            feed.put(*batch)
        nxt = self.next
        if nxt is None:
            nxt = self.next = asyncio.ensure_future(self.stream.__anext__())
        if not nxt.done():
            await asyncio.wait((nxt, feed.hungry()), return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                return HUNGRY
        self.next = None
        try:
            return nxt.result()
        except StopAsyncIteration:
            return END

    async def aclose(self) -> None:
        nxt, self.next = self.next, None
        if nxt is not None:
            nxt.cancel()
            await asyncio.wait((nxt,))  # its own cleanup ends before the stream's
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()
