"""The event loop thread a [`SyncAccountClient`][accountapi.SyncAccountClient] runs its calls on.

A `LoopThread` owns one private event loop in a daemon thread, started on first use,
and the waits of the threads that call into it:

- **Fork.** A child inherits the loop object but not its thread. The first use in a
  child makes a new loop thread and a new [`AccountClient`][accountapi.AccountClient] (pool, gate); the
  parent's loop, sockets and client are never touched in the child (kept, unused, so
  no finaliser of theirs runs there either).
- **Every wait is bounded.** A caller waits at most the bound it is given, and the loop
  thread fails every waiting caller when it ends for any reason; no wait depends on a
  thread that may be gone.
- **Close from any thread** ends every call in progress with [`ClientStateError`][accountapi.ClientStateError],
  cancels whatever else runs on the loop, and stops it.

`check_caller()` refuses a blocking call from a thread that runs an event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._exceptions import APITimeoutError, ClientStateError

if TYPE_CHECKING:
    from ._client import AccountClient

__all__ = [
    "CLOSED_MESSAGE",
    "CLOSE_LIMIT",
    "GRACE",
    "LoopThread",
    "check_caller",
    "keep_inherited",
]

T = TypeVar("T")

GRACE: Final = 1.0
"""Seconds a blocking call waits past its own deadline for the loop thread's answer.

The loop enforces the deadline itself; this is the bound for a loop that can no longer
answer (a callback blocking it, an interpreter shutting down), after which the caller
gets [`APITimeoutError`][accountapi.APITimeoutError] instead of waiting for ever."""

# How long closing waits for the loop thread to wind down (end calls, close the pool).
CLOSE_LIMIT: Final = 5.0
CLOSED_MESSAGE: Final = "the client is closed; create a new SyncAccountClient"

# Loop threads, loops and clients inherited from a parent process: never used or closed
# in the child (their sockets are the parent's), only kept from being finalised there.
_inherited: list[object] = []


def keep_inherited(thing: object) -> None:
    """Keep something of the parent process's (a balances() stream) from being
    finalised in a forked child, where its finaliser would act on the parent's loop."""
    _inherited.append(thing)


class LoopThread:
    """An event loop in a daemon thread, started on first use in the process that uses it.

    Owns the waits of the threads that call into it: `run()` waits at most the
    bound it is given, and when the loop ends (closed, or its thread gone) every caller
    still waiting is failed with [`ClientStateError`][accountapi.ClientStateError].
    """

    __slots__ = (
        "__weakref__",
        "_client",
        "_closed",
        "_forked",
        "_lock",
        "_loop",
        "_make",
        "_pending",
        "_stopped",
        "_thread",
    )

    def __init__(self, make: Callable[[], AccountClient]) -> None:
        self._make = make
        self._client = make()  # built here, so a bad option fails at construction
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._forked = False  # set in a forked child (os.register_at_fork), until adopted
        self._stopped = False
        self._closed = threading.Event()  # set once the first close() has ended
        _live.add(self)

    @property
    def built_client(self) -> AccountClient:
        """The async client as last built, without adopting a fork (for a ``repr``)."""
        return self._client

    @property
    def client(self) -> AccountClient:
        """The async client for this process (a new one after a fork)."""
        if self._forked:
            with self._lock:
                self._adopt_fork()
        return self._client

    def _adopt_fork(self) -> None:
        """In a forked child (under the lock): forget the parent's loop, thread and
        client without touching them, and start afresh on first use."""
        if not self._forked:
            return
        self._forget_parent()
        self._client = self._make()

    def _forget_parent(self) -> None:
        _inherited.append((self._loop, self._thread, self._client, self._pending))
        self._loop = self._thread = None
        self._pending = set()
        self._forked = False

    def _after_fork(self) -> None:
        # Another thread of the parent may have held the lock at the fork; it never lets
        # go here. The rest is adopted lazily, on first use.
        self._lock = threading.Lock()
        self._forked = True
        # A close the parent had under way at the fork ends there, never here.
        self._closed = threading.Event()
        if self._stopped:
            self._closed.set()

    def _start(self) -> asyncio.AbstractEventLoop:
        """The running loop, started on first use (under the lock)."""
        if self._stopped:
            raise ClientStateError(CLOSED_MESSAGE)
        self._adopt_fork()
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_serve,
            args=(loop, ready, self._pending, self._closed),
            name="accountapi-sync",
            daemon=True,
        )
        thread.start()
        if not ready.wait(CLOSE_LIMIT):  # pragma: no cover - a thread that never ran
            raise ClientStateError("the client's event loop thread did not start")
        self._loop, self._thread = loop, thread
        return loop

    def submit(self, make: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Start ``make()`` on the loop; the future is failed if the loop ends first.

        ``make`` is called on the loop, so a call the loop never gets to leaves no
        coroutine behind (no "never awaited" warning).
        """
        if sys.is_finalizing():  # daemon threads may be frozen: nothing would answer
            raise ClientStateError("the interpreter is shutting down")
        with self._lock:
            loop = self._start()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        try:
            loop.call_soon_threadsafe(_start_call, loop, make, future)
        except RuntimeError:  # its loop is closed: the thread has ended
            raise ClientStateError(CLOSED_MESSAGE) from None
        self._pending.add(future)
        if loop.is_closed():  # closed after the call was queued: the loop never runs it
            _fail({future})
        return future

    def run(self, make: Callable[[], Awaitable[T]], bound: float | None) -> T:
        """Run ``make()`` on the loop; wait at most ``bound`` seconds (None: until the
        call ends or the loop does)."""
        return self.wait(self.submit(make), bound)

    def wait(self, future: concurrent.futures.Future[T], bound: float | None) -> T:
        """The result of a call `submit()` started, waited for at most ``bound`` s."""
        try:
            return future.result(bound)
        except concurrent.futures.TimeoutError:
            if not future.cancel() and future.done() and not future.cancelled():
                # It ended as the wait did: cancelling cannot undo it, so its outcome
                # (a dismissal that happened, say) is the caller's, not a timeout.
                return future.result()
            raise APITimeoutError(
                f"the client's event loop did not answer within the call's deadline "
                f"plus {GRACE:g}s (is a callback blocking it?); the call was cancelled",
                request_sent=True,
                retryable=False,
            ) from None
        except concurrent.futures.CancelledError:
            raise ClientStateError(CLOSED_MESSAGE) from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the call too
            raise
        finally:
            self._pending.discard(future)

    def settle(self, make: Callable[[], Awaitable[object]], bound: float) -> None:
        """Run a clean-up ``make()`` on the loop, waiting at most ``bound`` seconds for
        it; unlike `run()` a wait that times out neither cancels it nor raises: a loop
        blocked now (by a callback) runs it once free, or its shutdown ends what it
        would have closed."""
        future = self.submit(make)
        try:
            future.result(bound)
        except concurrent.futures.TimeoutError:
            pass
        except concurrent.futures.CancelledError:
            raise ClientStateError(CLOSED_MESSAGE) from None
        finally:
            self._pending.discard(future)

    def close(self) -> None:
        """End every call, close the client and stop the loop; idempotent, any thread.

        From the loop thread itself (a finaliser run there) the shutdown is started and
        not waited for.
        """
        with self._lock:
            closing = self._stopped
            self._stopped = True
            if not closing:
                _live.discard(self)
                if self._forked:  # the parent's loop: not ours to stop
                    self._forget_parent()
            loop, thread, client = self._loop, self._thread, self._client
        if closing:
            # Another thread is closing it: return, as it will, once that has ended
            # (not from the loop thread itself, whose wait would hold the shutdown up).
            ended = not self.in_loop_thread() and self._closed.wait(CLOSE_LIMIT + GRACE)
            if ended and thread is not None:
                thread.join(GRACE)  # its loop has ended: so does the thread, at once
            return
        try:
            self._stop(loop, thread, client)
        finally:
            if thread is None or threading.current_thread() is not thread:
                self._closed.set()  # from the loop thread itself: set as the loop ends

    def _stop(
        self,
        loop: asyncio.AbstractEventLoop | None,
        thread: threading.Thread | None,
        client: AccountClient,
    ) -> None:
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(_begin_shutdown, loop, client)
        except RuntimeError:  # its loop is already closed
            return
        if threading.current_thread() is thread:
            return  # a finaliser or hook on the loop itself: the shutdown runs after it
        thread.join(CLOSE_LIMIT)
        if thread.is_alive():
            # A loop blocked by a callback cannot end its callers' waits: end them here.
            _fail(self._pending)

    def in_loop_thread(self) -> bool:
        """Whether the calling thread is this client's own loop thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    @property
    def stopped(self) -> bool:
        return self._stopped


def _serve(
    loop: asyncio.AbstractEventLoop,
    ready: threading.Event,
    pending: set[concurrent.futures.Future[Any]],
    closed: threading.Event,
) -> None:
    """The loop thread: run until stopped, then fail every caller still waiting (and
    let a close() that waits for another thread's return)."""
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        # Closed first: a call queued from now on is refused (or sees is_closed()), and
        # every call queued before is among ``pending`` by the time it is swept.
        loop.close()
        _fail(pending)
        closed.set()


def _start_call(
    loop: asyncio.AbstractEventLoop,
    make: Callable[[], Awaitable[T]],
    future: concurrent.futures.Future[T],
) -> None:
    """On the loop: run ``make()`` as a task whose outcome settles ``future``; the
    caller cancelling ``future`` (a timeout, Ctrl-C) cancels the task."""
    if future.done():  # cancelled or failed before the loop got to it
        return
    try:
        task = asyncio.ensure_future(make())
    except BaseException as exc:
        future.set_exception(exc)
        return
    task.add_done_callback(functools.partial(_settle, future))
    future.add_done_callback(functools.partial(_cancel_soon, loop, task))


def _settle(future: concurrent.futures.Future[T], task: asyncio.Future[T]) -> None:
    # The task's exception is read even when nobody waits any more (the caller's wait
    # was ended by close()): else asyncio logs "Task exception was never retrieved".
    exc = None if task.cancelled() else task.exception()
    if future.done():
        return
    with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
        if task.cancelled():
            future.cancel()
        elif exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())


def _cancel_soon(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Future[Any],
    future: concurrent.futures.Future[Any],
) -> None:
    if future.cancelled() and not task.done():
        with contextlib.suppress(RuntimeError):  # its loop is closed: so is the task
            loop.call_soon_threadsafe(task.cancel)


def _fail(pending: set[concurrent.futures.Future[Any]]) -> None:
    """End the wait of every caller still waiting on the loop with ClientStateError."""
    for future in list(pending):
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # done meanwhile
            future.set_exception(ClientStateError(CLOSED_MESSAGE))


def _begin_shutdown(loop: asyncio.AbstractEventLoop, client: AccountClient) -> None:
    loop.create_task(_shutdown(loop, client))


async def _shutdown(loop: asyncio.AbstractEventLoop, client: AccountClient) -> None:
    """On the loop: close the client (its calls end with ClientStateError), cancel any
    other task (a balances() stream), close async generators, stop the loop."""
    try:
        with contextlib.suppress(Exception):  # closing goes on whatever the pool says
            async with asyncio.timeout(CLOSE_LIMIT):
                await client.aclose()
        me = asyncio.current_task()
        others = [task for task in asyncio.all_tasks(loop) if task is not me]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=CLOSE_LIMIT)
        await loop.shutdown_asyncgens()
    finally:
        loop.stop()


_live: weakref.WeakSet[LoopThread] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for runner in list(_live):
        runner._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _in_notebook_cell() -> bool:
    """Whether this thread runs a Jupyter (IPython kernel) cell: the main thread of a
    kernel, whose event loop is the kernel's, where a blocking call is what every sync
    library does. Any other thread running a loop, in a kernel or not, is refused."""
    if threading.current_thread() is not threading.main_thread():
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def check_caller() -> None:
    """Raise [`ClientStateError`][accountapi.ClientStateError] in a thread that runs an event loop (an async
    server's: the call would stall it), except a notebook cell's."""
    if asyncio._get_running_loop() is None:  # the documented fast form of the check
        return
    if _in_notebook_cell():
        return
    raise ClientStateError(
        "SyncAccountClient blocks, so it cannot be called from a running event loop "
        "(that would stall it); use AccountClient and await it there"
    )
