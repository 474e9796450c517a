"""A blocking face on the async client, for Django views, Celery tasks, scripts, notebooks.

One implementation: [`SyncAccountClient`][accountapi.SyncAccountClient] owns an [`AccountClient`][accountapi.AccountClient] that lives
on a private event loop in a daemon thread started on first use (a `_LoopThread`),
and hands each call to that loop. Every thread that calls it shares the one client, so
the one connection pool and the one per-key gate: the 10-per-key limit holds across
threads. Nothing of the calling logic is copied here.

What a real process does to such a thread, and who ends each wait:

- **Fork.** A child inherits the loop object but not its thread. The first use in a
  child makes a new loop thread and a new [`AccountClient`][accountapi.AccountClient] (pool, gate); the
  parent's loop, sockets and client are never touched in the child (kept, unused, so
  no finaliser of theirs runs there either).
- **Every wait is bounded.** A caller waits for its call at most the call's own
  deadline plus `GRACE` seconds, and the loop thread fails every waiting caller
  when it ends for any reason; no wait depends on a thread that may be gone.
- **Close from any thread** ends every call in progress with [`ClientStateError`][accountapi.ClientStateError]
  ([`AccountClient.aclose()`][accountapi.AccountClient.aclose]), cancels whatever else runs on the loop, and stops it.
- **Exit and dropped clients.** A ``weakref.finalize`` closes the client when it is
  collected and at interpreter exit (before daemon threads are frozen), so a forgotten
  client leaks no thread, socket or warning, and exit never waits on a frozen loop.
- **Key iterables** given to [`SyncAccountClient.balances()`][accountapi.SyncAccountClient.balances] are read in the
  caller's thread, a batch at a time, never on the shared loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import os
import ssl as ssl_module
import sys
import threading
import weakref
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from ._account import AccountResource, AccountResourceWithResponse
from ._budget import RetryBudget
from ._bulk import DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_WINDOW, BalanceResult, KeySource
from ._client import AccountClient
from ._clock import Clock
from ._config import NOT_GIVEN, Limits, NotGiven, RetryPolicy, Timeout
from ._events import RetryEvent
from ._exceptions import APITimeoutError, ClientStateError, ConfigurationError
from ._headers import check_user_headers
from ._http._proxy import check_proxy_url
from ._keys import Credential
from ._models import Profile
from ._response import APIResponse
from .gates import KeyGate

if TYPE_CHECKING:
    from yarl import URL

__all__ = ["GRACE", "SyncAccountClient", "SyncAccountResource", "SyncAccountResourceWithResponse"]

T = TypeVar("T")

GRACE: Final = 1.0
"""Seconds a blocking call waits past its own deadline for the loop thread's answer.

The loop enforces the deadline itself; this is the bound for a loop that can no longer
answer (a callback blocking it, an interpreter shutting down), after which the caller
gets [`APITimeoutError`][accountapi.APITimeoutError] instead of waiting for ever."""

# How long closing waits for the loop thread to wind down (end calls, close the pool).
_CLOSE_LIMIT: Final = 5.0
_CLOSED: Final = "the client is closed; create a new SyncAccountClient"

# Loop threads, loops and clients inherited from a parent process: never used or closed
# in the child (their sockets are the parent's), only kept from being finalised there.
_inherited: list[object] = []


class _LoopThread:
    """An event loop in a daemon thread, started on first use in the process that uses it.

    Owns the waits of the threads that call into it: `run()` waits at most the
    bound it is given, and when the loop ends (closed, or its thread gone) every caller
    still waiting is failed with [`ClientStateError`][accountapi.ClientStateError].
    """

    __slots__ = (
        "__weakref__",
        "_client",
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
        _live.add(self)

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

    def _start(self) -> asyncio.AbstractEventLoop:
        """The running loop, started on first use (under the lock)."""
        if self._stopped:
            raise ClientStateError(_CLOSED)
        self._adopt_fork()
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_serve, args=(loop, ready, self._pending), name="accountapi-sync", daemon=True
        )
        thread.start()
        if not ready.wait(_CLOSE_LIMIT):  # pragma: no cover - a thread that never ran
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
            raise ClientStateError(_CLOSED) from None
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
            future.cancel()
            raise APITimeoutError(
                f"the client's event loop did not answer within the call's deadline "
                f"plus {GRACE:g}s (is a callback blocking it?); the call was cancelled",
                request_sent=True,
                retryable=False,
            ) from None
        except concurrent.futures.CancelledError:
            raise ClientStateError(_CLOSED) from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the call too
            raise
        finally:
            self._pending.discard(future)

    def close(self) -> None:
        """End every call, close the client and stop the loop; idempotent, any thread.

        From the loop thread itself (a finaliser run there) the shutdown is started and
        not waited for.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            _live.discard(self)
            if self._forked:  # the parent's loop: not ours to stop
                self._forget_parent()
            loop, thread, client = self._loop, self._thread, self._client
        if loop is None or thread is None:
            return
        try:
            loop.call_soon_threadsafe(_begin_shutdown, loop, client)
        except RuntimeError:  # its loop is already closed
            return
        if threading.current_thread() is thread:
            return  # a finaliser or hook on the loop itself: the shutdown runs after it
        thread.join(_CLOSE_LIMIT)
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
) -> None:
    """The loop thread: run until stopped, then fail every caller still waiting."""
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        # Closed first: a call queued from now on is refused (or sees is_closed()), and
        # every call queued before is among ``pending`` by the time it is swept.
        loop.close()
        _fail(pending)


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
            future.set_exception(ClientStateError(_CLOSED))


def _begin_shutdown(loop: asyncio.AbstractEventLoop, client: AccountClient) -> None:
    loop.create_task(_shutdown(loop, client))


async def _shutdown(loop: asyncio.AbstractEventLoop, client: AccountClient) -> None:
    """On the loop: close the client (its calls end with ClientStateError), cancel any
    other task (a balances() stream), close async generators, stop the loop."""
    try:
        with contextlib.suppress(Exception):  # closing goes on whatever the pool says
            await asyncio.wait_for(client.aclose(), _CLOSE_LIMIT)
        me = asyncio.current_task()
        others = [task for task in asyncio.all_tasks(loop) if task is not me]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=_CLOSE_LIMIT)
        await loop.shutdown_asyncgens()
    finally:
        loop.stop()


_live: weakref.WeakSet[_LoopThread] = weakref.WeakSet()


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


def _check_caller() -> None:
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


def _bound(client: AccountClient, timeout: Timeout | float | NotGiven | None) -> float | None:
    """How long a caller waits for a call: its deadline plus `GRACE` (None: none)."""
    timeouts = client.timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)
    return None if timeouts.total is None else timeouts.total + GRACE


class SyncAccountResource:
    """``client.account`` of a [`SyncAccountClient`][accountapi.SyncAccountClient]: the same calls and per-call
    options as [`AccountResource`][accountapi.AccountResource], blocking."""

    __slots__ = ("_client", "_raw")

    def __init__(self, client: SyncAccountClient, *, raw: bool = False) -> None:
        self._client = client  # kept alive by its resource: SyncAccountClient().account works
        self._raw = raw

    @property
    def with_response(self) -> SyncAccountResourceWithResponse:
        """The same calls, each returning an `APIResponse` around its value."""
        return SyncAccountResourceWithResponse(self._client)

    def _call(
        self,
        method: str,
        api_key: str | None,
        timeout: Timeout | float | NotGiven | None,
        max_retries: int | NotGiven,
        extra_headers: Mapping[str, str] | None,
        coalesce: bool | NotGiven = NOT_GIVEN,
    ) -> object:
        owner = self._client
        runner = owner._usable()
        call = _AccountCall(
            owner, method, self._raw, api_key, timeout, max_retries, extra_headers, coalesce
        )
        del api_key  # the key stays out of this frame's locals
        return runner.run(call, _bound(owner._async_client(), timeout))

    def profile(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        coalesce: bool | NotGiven = NOT_GIVEN,
    ) -> Profile:
        """Fetch the account profile (see [`AccountResource.profile()`][accountapi.AccountResource.profile])."""
        return cast(
            Profile,
            self._call("profile", api_key, timeout, max_retries, extra_headers, coalesce),
        )

    def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Clear the unseen-credit notice (see [`AccountResource.dismiss_notifications()`][accountapi.AccountResource.dismiss_notifications])."""
        self._call("dismiss_notifications", api_key, timeout, max_retries, extra_headers)

    def __repr__(self) -> str:
        return f"SyncAccountResource({self._client!r})"


class SyncAccountResourceWithResponse:
    """``client.account.with_response`` of a [`SyncAccountClient`][accountapi.SyncAccountClient]."""

    __slots__ = ("_resource",)

    def __init__(self, client: SyncAccountClient) -> None:
        self._resource = SyncAccountResource(client, raw=True)

    def profile(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[Profile]:
        """[`SyncAccountResource.profile()`][accountapi.SyncAccountResource.profile], with the answer's status, headers and request id."""
        return cast(
            "APIResponse[Profile]",
            self._resource._call("profile", api_key, timeout, max_retries, extra_headers),
        )

    def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[None]:
        """[`SyncAccountResource.dismiss_notifications()`][accountapi.SyncAccountResource.dismiss_notifications], with the answer's status,
        headers and request id."""
        return cast(
            "APIResponse[None]",
            self._resource._call(
                "dismiss_notifications", api_key, timeout, max_retries, extra_headers
            ),
        )

    def __repr__(self) -> str:
        return f"SyncAccountResourceWithResponse({self._resource._client!r})"


class _AccountCall:
    """One account call, made on the loop thread: the key travels as a
    `Credential` (its ``repr`` is the hint) and the coroutine is created only
    when the loop runs it."""

    __slots__ = (
        "_coalesce",
        "_extra_headers",
        "_key",
        "_max_retries",
        "_method",
        "_owner",
        "_raw",
        "_timeout",
    )

    def __init__(
        self,
        owner: SyncAccountClient,
        method: str,
        raw: bool,
        api_key: str | None,
        timeout: Timeout | float | NotGiven | None,
        max_retries: int | NotGiven,
        extra_headers: Mapping[str, str] | None,
        coalesce: bool | NotGiven,
    ) -> None:
        self._owner = owner
        self._method = method
        self._raw = raw
        self._key = None if api_key is None else Credential(api_key)
        self._timeout = timeout
        self._max_retries = max_retries
        self._extra_headers = extra_headers
        self._coalesce = coalesce

    def __call__(self) -> Awaitable[object]:
        resource = self._owner._async_client().account
        key = self._key
        if self._coalesce is not NOT_GIVEN:  # profile() only
            return resource.profile(
                api_key=None if key is None else key.reveal(),
                timeout=self._timeout,
                max_retries=self._max_retries,
                extra_headers=self._extra_headers,
                coalesce=self._coalesce,
            )
        account: AccountResource | AccountResourceWithResponse = (
            resource.with_response if self._raw else resource
        )
        method = account.profile if self._method == "profile" else account.dismiss_notifications
        # reveal() raises MalformedAPIKeyError for what is not a key, as the async call does.
        return method(
            api_key=None if key is None else key.reveal(),
            timeout=self._timeout,
            max_retries=self._max_retries,
            extra_headers=self._extra_headers,
        )

    def __repr__(self) -> str:
        key = None if self._key is None else self._key.hint
        return f"_AccountCall({self._method!r}, api_key={key!r})"


class _Feed:
    """The keys of a sync ``balances()`` run: read in the caller's thread a batch at a
    time, handed to the loop's workers as an async iterator.

    A worker that finds no key waits; the caller's thread is told (``_HUNGRY``), reads
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

    def __aiter__(self) -> _Feed:
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


class SyncAccountClient:
    """The blocking client: the same constructor, calls, results and errors as
    [`AccountClient`][accountapi.AccountClient], for code that is not async.

    ``with SyncAccountClient() as client: client.account.profile()``. Safe to share
    across threads (one pool and one per-key limit for all of them) and across a fork
    (the child makes its own loop thread and pool on first use). [`close()`][accountapi.SyncAccountClient.close] from any
    thread ends every call in progress with [`ClientStateError`][accountapi.ClientStateError]; a client never
    closed is closed when collected and at interpreter exit. Calling it from a thread
    that runs an event loop raises [`ClientStateError`][accountapi.ClientStateError] (await
    [`AccountClient`][accountapi.AccountClient] there), except in a Jupyter notebook cell. ``session=`` is not
    accepted (an aiohttp session belongs to the loop that made it).
    """

    __slots__ = ("__weakref__", "_derived", "_finalizer", "_options", "_parent", "_runner")

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        limits: Limits | NotGiven = NOT_GIVEN,
        session: None = None,
        ssl: ssl_module.SSLContext | None = None,
        trust_env: bool = False,
        proxy: str | URL | None = None,
        allow_insecure_http: bool = False,
        on_retry: Callable[[RetryEvent], None] | None = None,
        clock: Clock | None = None,
        key_gate: KeyGate | None = None,
        default_headers: Mapping[str, str] | None = None,
        retry_budget: RetryBudget | NotGiven | None = NOT_GIVEN,
        coalesce: bool = False,
    ) -> None:
        if session is not None:
            raise ConfigurationError(
                "SyncAccountClient makes its own aiohttp session on its own event loop; "
                "session= is for AccountClient"
            )
        options: dict[str, Any] = {
            "base_url": base_url,
            "timeout": timeout,
            "max_retries": max_retries,
            "retry": retry,
            "limits": limits,
            "ssl": ssl,
            "trust_env": trust_env,
            "allow_insecure_http": allow_insecure_http,
            "on_retry": on_retry,
            "clock": clock,
            "key_gate": key_gate,
            "default_headers": default_headers,
            "retry_budget": retry_budget,
            "coalesce": coalesce,
        }
        key = None if api_key is None else Credential(api_key)
        del api_key
        # Like the key, the proxy's password leaves this frame's locals at once (held by
        # a ProxyURL, whose repr is scheme://host:port).
        checked_proxy = None if proxy is None else check_proxy_url(proxy)
        del proxy

        def make() -> AccountClient:
            # Again in a forked child: a new pool and gate for the same key and options.
            return AccountClient(
                None if key is None else key.reveal(),
                proxy=None if checked_proxy is None else checked_proxy.url,
                **options,
            )

        self._runner = _LoopThread(make)
        self._finalizer = weakref.finalize(self, self._runner.close)
        # A derived client: the client it came from (kept alive, and with it the loop)
        # and the options it was given; its async client is derived from that one's.
        self._parent: SyncAccountClient | None = None
        self._options: dict[str, Any] = {}
        self._derived: tuple[AccountClient, AccountClient] | None = None

    def with_options(
        self,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
        coalesce: bool | NotGiven = NOT_GIVEN,
    ) -> SyncAccountClient:
        """This client with other defaults on the same loop thread, pool and key gate
        (see [`AccountClient.with_options()`][accountapi.AccountClient.with_options]); closing either closes both."""
        options: dict[str, Any] = {
            "timeout": timeout,
            "max_retries": max_retries,
            "retry": retry,
            "coalesce": coalesce,
            # Checked and copied now: the same headers again after a fork.
            "default_headers": None
            if default_headers is None
            else dict(check_user_headers(default_headers, "default_headers")),
        }
        if not isinstance(api_key, NotGiven):
            options["api_key"] = Credential(api_key)
        del api_key
        derived = object.__new__(SyncAccountClient)
        derived._runner = self._runner
        derived._parent = self
        derived._options = options
        derived._derived = None
        derived._finalizer = self._finalizer
        derived._async_client()  # a bad option fails here, not at the first call
        return derived

    def _async_client(self) -> AccountClient:
        """The async client this one's calls run on: the loop's, or for a derived client
        its parent's with this one's options, exactly as [`AccountClient.with_options()`][accountapi.AccountClient.with_options]
        chains (made again after a fork, when the loop's client is a new one)."""
        parent = self._parent
        if parent is None:
            return self._runner.client
        base = parent._async_client()
        derived = self._derived
        if derived is not None and derived[0] is base:
            return derived[1]
        options = self._options
        key = options.get("api_key")
        made = base.with_options(
            **{name: value for name, value in options.items() if name != "api_key"},
            **({} if key is None else {"api_key": key.reveal()}),
        )
        self._derived = (base, made)
        return made

    @property
    def account(self) -> SyncAccountResource:
        """The account calls (``profile()``, ``dismiss_notifications()``, and
        ``with_response``), blocking."""
        return SyncAccountResource(self)

    @property
    def base_url(self) -> str:
        """The service's base URL calls go to (without ``/v1``)."""
        return self._runner.client.base_url

    @property
    def timeout(self) -> Timeout:
        """The timeouts calls get unless they pass their own."""
        return self._async_client().timeout

    @property
    def max_retries(self) -> int:
        """How many times a call is retried after its first attempt (unless it says otherwise)."""
        return self._async_client().max_retries

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The retry budget every call of this client (and its derived ones) draws from."""
        return self._async_client().retry_budget

    @property
    def coalesce(self) -> bool:
        return self._async_client().coalesce

    @property
    def default_headers(self) -> Mapping[str, str]:
        """The headers every call sends besides the SDK's own (a read-only copy)."""
        return self._async_client().default_headers

    @property
    def closed(self) -> bool:
        """True once the client is closed."""
        return self._runner.stopped

    def _usable(self) -> _LoopThread:
        if self._runner.stopped:
            raise ClientStateError(_CLOSED)
        _check_caller()
        return self._runner

    def balances(
        self,
        keys: KeySource,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    ) -> Iterator[BalanceResult]:
        """One [`BalanceResult`][accountapi.BalanceResult] per key, as [`AccountClient.balances()`][accountapi.AccountClient.balances] gives them.

        ``keys`` may be any iterable of str, read lazily in the calling thread (a batch
        of ``concurrency`` keys at a time), or an async iterable (read on the loop).
        Leaving the loop early (``break``, an exception) cancels the checks still running.
        """
        self._usable()
        client = self._async_client()
        feed = None
        source: KeySource = keys
        if isinstance(keys, Iterable) and not isinstance(keys, str | bytes | list | tuple):
            feed = _Feed(keys, max(int(concurrency) if isinstance(concurrency, int) else 1, 1))
            source = feed
        stream = client.balances(
            source,
            concurrency=concurrency,
            ordered=ordered,
            timeout=timeout,
            dedupe_window=dedupe_window,
        )
        # Each step waits for a check (bounded by its deadline) or, with a plain iterable,
        # for the caller's thread to read keys; an async iterable is read on the loop for
        # as long as it takes, so its steps are ended by close() instead.
        bound = None if isinstance(keys, AsyncIterable) else _bound(client, timeout)
        return self._iterate(_Steps(stream, feed), bound)

    def _iterate(self, steps: _Steps, bound: float | None) -> Iterator[BalanceResult]:
        # ``self`` stays referenced while the iterator lives: the client is not collected
        # (and closed) under a caller that kept only the iterator.
        runner = self._runner
        feed = steps.feed
        batch: tuple[bool, Exception | None] | None = None
        try:
            while True:
                outcome = runner.run(functools.partial(steps.step, batch), bound)
                batch = None
                if outcome is _END:
                    return
                if outcome is _HUNGRY:
                    assert feed is not None  # noqa: S101 - only a feed reports hunger
                    batch = feed.read()
                    continue
                assert isinstance(outcome, BalanceResult)  # noqa: S101
                yield outcome
        finally:
            if runner.stopped or sys.is_finalizing():
                pass  # the loop's shutdown ends the stream's checks
            elif runner.in_loop_thread():
                # Collected on the loop thread itself (a finaliser there): waiting for the
                # loop would block it, so the stream is closed after this returns.
                asyncio.get_running_loop().create_task(steps.aclose())
            else:
                with contextlib.suppress(ClientStateError):  # closed meanwhile: all ended
                    runner.run(steps.aclose, _CLOSE_LIMIT)

    def close(self) -> None:
        """Close the client and stop its loop thread; idempotent, from any thread.

        Calls in progress in other threads (queued, on the wire, waiting to retry) end at
        once with [`ClientStateError`][accountapi.ClientStateError]; later calls raise it too.
        """
        if self._runner.stopped:
            return
        if not self._runner.in_loop_thread():  # a hook on the loop itself may close it
            _check_caller()  # from an async server's loop: refused, and still open
        self._finalizer()

    def __enter__(self) -> SyncAccountClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Also called on a half-built client (error trackers render every frame's locals).
        runner = getattr(self, "_runner", None)
        return "SyncAccountClient(<not built>)" if runner is None else f"Sync{runner._client!r}"


_END: Final = object()
_HUNGRY: Final = object()


class _Steps:
    """The loop side of a sync ``balances()`` iterator: one step per result."""

    __slots__ = ("feed", "next", "stream")

    def __init__(self, stream: AsyncIterator[BalanceResult], feed: _Feed | None) -> None:
        self.stream = stream
        self.feed = feed
        self.next: asyncio.Task[BalanceResult] | None = None

    async def step(self, batch: tuple[bool, Exception | None] | None) -> object:
        """The next result, or ``_END``, or ``_HUNGRY`` when the workers wait for keys
        the caller's thread must read first (``batch`` hands over the last read)."""
        feed = self.feed
        if feed is None:
            try:
                return await self.stream.__anext__()
            except StopAsyncIteration:
                return _END
        if batch is not None:
            feed.put(*batch)
        nxt = self.next
        if nxt is None:
            nxt = self.next = asyncio.ensure_future(self.stream.__anext__())
        if not nxt.done():
            await asyncio.wait((nxt, feed.hungry()), return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                return _HUNGRY
        self.next = None
        try:
            return nxt.result()
        except StopAsyncIteration:
            return _END

    async def aclose(self) -> None:
        nxt, self.next = self.next, None
        if nxt is not None:
            nxt.cancel()
            await asyncio.wait((nxt,))  # its own cleanup ends before the stream's
        aclose = getattr(self.stream, "aclose", None)
        if aclose is not None:
            await aclose()
