"""A blocking face on the async client, for Django views, Celery tasks, scripts, notebooks.

One implementation: :class:`SyncAccountClient` owns an :class:`AccountClient` that lives
on a private event loop in a daemon thread started on first use, and hands each call to
that loop (``asyncio.run_coroutine_threadsafe``). Every thread that calls it shares the
one client, so the one connection pool and the one per-key gate: the 10-per-key limit
holds across threads. Nothing of the calling logic is copied here.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from ._bulk import DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_WINDOW, BalanceResult, KeySource
from ._client import AccountClient
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._exceptions import ClientStateError, ConfigurationError
from ._models import Profile

__all__ = ["SyncAccountClient", "SyncAccountResource"]

T = TypeVar("T")


class _LoopThread:
    """An event loop running in a daemon thread, started on first use."""

    __slots__ = ("_lock", "_loop", "_stopped", "_thread")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._stopped:  # a call that raced with close(): never a second thread
                raise ClientStateError("the client is closed; create a new SyncAccountClient")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="accountapi-sync", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @staticmethod
    def check_caller() -> None:
        """Raise :class:`ClientStateError` in a thread that runs an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise ClientStateError(
            "SyncAccountClient blocks, so it cannot be called from a running event loop "
            "(that would stall it); use AccountClient and await it there"
        )

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run ``make()`` on the loop and wait for its result in the calling thread."""
        self.check_caller()
        loop = self.loop()

        async def call() -> T:
            return await make()

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt in the caller: stop the call too
            raise

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class SyncAccountResource:
    """``client.account`` of a :class:`SyncAccountClient`: the same calls, blocking."""

    __slots__ = ("_client",)

    def __init__(self, client: SyncAccountClient) -> None:
        self._client = client

    def profile(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
    ) -> Profile:
        """Fetch the account profile (see :meth:`AccountResource.profile`)."""
        client = self._client
        client._check()
        call = client._async.account.profile(api_key=api_key, timeout=timeout)
        del api_key  # the key stays out of this frame's locals
        return client._runner.run(lambda: call)

    def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
    ) -> None:
        """Clear the unseen-credit notice (see :meth:`AccountResource.dismiss_notifications`)."""
        client = self._client
        client._check()
        call = client._async.account.dismiss_notifications(api_key=api_key, timeout=timeout)
        del api_key
        client._runner.run(lambda: call)


class SyncAccountClient:
    """The blocking client: the same constructor, calls, results and errors as
    :class:`AccountClient`, for code that is not async.

    ``with SyncAccountClient() as client: client.account.profile()``. Safe to share
    across threads (one pool and one per-key limit for all of them). Calling it from a
    thread that runs an event loop raises :class:`ClientStateError`: await
    :class:`AccountClient` there instead. ``session=`` is not accepted (an aiohttp
    session belongs to the loop that made it).
    """

    __slots__ = ("_async", "_closed", "_runner", "account")

    def __init__(self, api_key: str | None = None, **options: Any) -> None:
        if options.get("session") is not None:
            raise ConfigurationError(
                "SyncAccountClient makes its own aiohttp session on its own event loop; "
                "session= is for AccountClient"
            )
        self._async = AccountClient(api_key, **options)
        del api_key
        self._runner = _LoopThread()
        self._closed = False
        self.account = SyncAccountResource(self)

    @property
    def base_url(self) -> str:
        return self._async.base_url

    @property
    def closed(self) -> bool:
        return self._closed

    def balances(
        self,
        keys: KeySource,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    ) -> Iterator[BalanceResult]:
        """One :class:`BalanceResult` per key, as :meth:`AccountClient.balances` gives them.

        ``keys`` may be any iterable of str (read on the client's loop thread, lazily).
        Leaving the loop early (``break``, an exception) cancels the checks still running.
        """
        self._check()
        stream = self._async.balances(
            keys,
            concurrency=concurrency,
            ordered=ordered,
            timeout=timeout,
            dedupe_window=dedupe_window,
        )
        return self._iterate(stream)

    def _iterate(self, stream: AsyncIterator[BalanceResult]) -> Iterator[BalanceResult]:
        runner = self._runner

        async def step() -> BalanceResult | None:
            try:
                return await stream.__anext__()
            except StopAsyncIteration:
                return None

        try:
            while (result := runner.run(step)) is not None:
                yield result
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and not self._closed:
                runner.run(aclose)

    def _check(self) -> None:
        if self._closed:
            raise ClientStateError("the client is closed; create a new SyncAccountClient")
        self._runner.check_caller()

    def close(self) -> None:
        """Close the client and stop its loop thread; idempotent."""
        if self._closed:
            return
        self._runner.check_caller()  # from a running loop: refused, and still open
        self._closed = True
        try:
            self._runner.run(self._async.aclose)
        finally:
            self._runner.stop()

    def __enter__(self) -> SyncAccountClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Sync{self._async!r}"
