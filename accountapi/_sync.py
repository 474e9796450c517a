"""A blocking face on the async client, for Django views, Celery tasks, scripts, notebooks.

One implementation: [`SyncAccountClient`][accountapi.SyncAccountClient] owns an [`AccountClient`][accountapi.AccountClient] that lives
on a private event loop in a daemon thread started on first use (a `LoopThread`, in `_loop_thread.py`),
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
import contextlib
import functools
import os
import ssl as ssl_module
import sys
import weakref
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import TYPE_CHECKING, Any, cast

from ._account import AccountResource, AccountResourceWithResponse
from ._balance_results import BalanceResult
from ._budget import RetryBudget
from ._bulk import DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_WINDOW, KeySource
from ._client import AccountClient
from ._clock import Clock
from ._config import NOT_GIVEN, Limits, NotGiven, RetryPolicy, Timeout
from ._events import RetryEvent
from ._exceptions import ClientStateError, ConfigurationError
from ._headers import check_user_headers
from ._http._proxy import check_proxy_url
from ._keys import Credential
from ._loop_thread import (
    CLOSE_LIMIT,
    CLOSED_MESSAGE,
    GRACE,
    LoopThread,
    check_caller,
    keep_inherited,
)
from ._models import Profile
from ._response import APIResponse
from ._sync_balances import END, HUNGRY, BalanceSteps, KeyFeed
from .gates import KeyGate

if TYPE_CHECKING:
    from yarl import URL

__all__ = ["GRACE", "SyncAccountClient", "SyncAccountResource", "SyncAccountResourceWithResponse"]


FORKED_ITERATOR = (
    "this balances() iterator was made before a fork, in the parent process; "
    "call balances() again in this one"
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

        self._runner = LoopThread(make)
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

    def _usable(self) -> LoopThread:
        if self._runner.stopped:
            raise ClientStateError(CLOSED_MESSAGE)
        check_caller()
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
            feed = KeyFeed(keys, max(int(concurrency) if isinstance(concurrency, int) else 1, 1))
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
        return self._iterate(BalanceSteps(stream, feed), bound, os.getpid())

    def _iterate(
        self, steps: BalanceSteps, bound: float | None, pid: int
    ) -> Iterator[BalanceResult]:
        # ``self`` stays referenced while the iterator lives: the client is not collected
        # (and closed) under a caller that kept only the iterator.
        runner = self._runner
        feed = steps.feed
        batch: tuple[bool, Exception | None] | None = None
        try:
            while True:
                if os.getpid() != pid:
                    # Its stream, tasks and pool are the parent's, on the parent's loop.
                    raise ClientStateError(FORKED_ITERATOR)
                outcome = runner.run(functools.partial(steps.step, batch), bound)
                batch = None
                if outcome is END:
                    return
                if outcome is HUNGRY:
                    assert feed is not None  # noqa: S101 - only a feed reports hunger
                    batch = feed.read()
                    continue
                assert isinstance(outcome, BalanceResult)  # noqa: S101
                yield outcome
        finally:
            if os.getpid() != pid:
                keep_inherited(steps)  # the parent's: never closed or finalised here
            elif runner.stopped or sys.is_finalizing():
                pass  # the loop's shutdown ends the stream's checks
            elif runner.in_loop_thread():
                # Collected on the loop thread itself (a finaliser there): waiting for the
                # loop would block it, so the stream is closed after this returns.
                asyncio.get_running_loop().create_task(steps.aclose())
            else:
                with contextlib.suppress(ClientStateError):  # closed meanwhile: all ended
                    runner.settle(steps.aclose, CLOSE_LIMIT)

    def close(self) -> None:
        """Close the client and stop its loop thread; idempotent, from any thread.

        Calls in progress in other threads (queued, on the wire, waiting to retry) end at
        once with [`ClientStateError`][accountapi.ClientStateError]; later calls raise it too.
        """
        runner = self._runner
        if not runner.stopped and not runner.in_loop_thread():  # a hook may close it
            check_caller()  # from an async server's loop: refused, and still open
        self._finalizer()
        runner.close()  # closed by another thread meanwhile: returns once that has ended

    def __enter__(self) -> SyncAccountClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Also called on a half-built client (error trackers render every frame's locals).
        runner = getattr(self, "_runner", None)
        return (
            "SyncAccountClient(<not built>)" if runner is None else f"Sync{runner.built_client!r}"
        )
