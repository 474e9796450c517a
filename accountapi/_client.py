"""The client: wires keys, gate, retries, transport and decoding into one call path."""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

    from ._bulk import BalanceStream, KeySource

from ._account import AccountResource
from ._clock import Clock, SystemClock
from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_RETRY,
    NOT_GIVEN,
    Limits,
    NotGiven,
    RetryPolicy,
    Timeout,
)
from ._exceptions import (
    AccountAPIError,
    APITimeoutError,
    ConfigurationError,
)
from ._gate import GateTimeout, KeyGate, MemoryKeyGate
from ._keys import check_key, key_hint, resolve_api_key, resolve_base_url
from ._retry import Retrier, RetryEvent
from ._status import error_for_status
from ._transport import RawResponse, Transport, request_headers
from ._urls import check_base_url

__all__ = ["AccountClient"]

T = TypeVar("T")


class AccountClient:
    """An asyncio client for the account API: one connection pool, any number of keys.

    Use it as ``async with AccountClient() as client:`` (or call :meth:`aclose`). Build it
    anywhere, with or without a running loop; its aiohttp session is created inside the
    loop on first use. One client serves many API keys: pass ``api_key=`` per call to use
    another key on the same pool, gate and retry policy.

    Arguments (all but ``api_key`` keyword-only):

    - ``api_key``: default key for calls; falls back to ``$ACCOUNTAPI_API_KEY``, then
      ``$DEPICTA_API_KEY``. May stay unset when every call passes its own key.
    - ``base_url``: falls back to ``$ACCOUNTAPI_BASE_URL``, ``$DEPICTA_API_URL``, then
      ``https://api.depicta.ai``. Plain ``http://`` only for loopback hosts unless
      ``allow_insecure_http=True``.
    - ``timeout``: a :class:`Timeout`, a number (the whole call's deadline in seconds) or
      ``None`` (no limits at all). Default: ``Timeout()``.
    - ``max_retries`` / ``retry``: retries of 429, 502, 503 and failed connects
      (:class:`RetryPolicy`); ``max_retries=0`` turns retrying off.
    - ``limits``: pool size, per-key concurrency (default 10, the service's maximum) and
      the largest response body read (:class:`Limits`).
    - ``session``: an ``aiohttp.ClientSession`` to use instead of the client's own; it is
      never closed by the SDK. (The client's own session keeps no cookies; give yours
      ``cookie_jar=aiohttp.DummyCookieJar()`` if it serves many keys.)
    - ``ssl``: an ``ssl.SSLContext`` to verify the service with (for a private CA).
      Verification cannot be turned off.
    - ``trust_env``: take proxy settings from the environment (off by default).
    - ``on_retry``: called with a :class:`RetryEvent` before each retry's wait.
    - ``clock``: the time source and sleep (tests pass
      :class:`accountapi.testing.VirtualClock` to make waits instant).
    - ``key_gate``: the per-key admission control (:class:`KeyGate`); defaults to an
      in-process :class:`MemoryKeyGate` with ``limits.per_key`` slots.
    """

    __slots__ = (
        "_api_key",
        "_clock",
        "_default_headers",
        "_gate",
        "_limits",
        "_retrier",
        "_timeout",
        "_transport",
        "_try_acquire",
        "account",
    )

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        limits: Limits | NotGiven = NOT_GIVEN,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | None = None,
        trust_env: bool = False,
        allow_insecure_http: bool = False,
        on_retry: Callable[[RetryEvent], None] | None = None,
        clock: Clock | None = None,
        key_gate: KeyGate | None = None,
    ) -> None:
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise ConfigurationError(
                "ssl must be an ssl.SSLContext (verification cannot be switched off)"
            )
        if session is not None and (ssl is not None or trust_env):
            raise ConfigurationError(
                "ssl and trust_env configure the client's own session; "
                "set them on the aiohttp.ClientSession you pass instead"
            )
        self._api_key = resolve_api_key(api_key)
        # Built once for the default key; other keys get theirs per call.
        self._default_headers = request_headers(self._api_key or "")
        base = check_base_url(resolve_base_url(base_url), allow_insecure_http=allow_insecure_http)
        self._timeout = Timeout.coerce(timeout)
        policy = DEFAULT_RETRY if isinstance(retry, NotGiven) else retry
        if not isinstance(policy, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        if not isinstance(max_retries, NotGiven):
            policy = attrs.evolve(policy, max_retries=max_retries)
        self._limits = DEFAULT_LIMITS if isinstance(limits, NotGiven) else limits
        if not isinstance(self._limits, Limits):
            raise ConfigurationError("limits must be a Limits")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._gate: KeyGate = (
            key_gate
            if key_gate is not None
            else MemoryKeyGate(self._limits.per_key, clock=self._clock)
        )
        self._try_acquire: Callable[[str], bool] | None = (
            self._gate.try_acquire if type(self._gate) is MemoryKeyGate else None
        )
        self._transport = Transport(
            base_url=base,
            timeout=self._timeout,
            limits=self._limits,
            ssl=ssl,
            trust_env=trust_env,
            session=session,
        )
        self._retrier = Retrier(policy, clock=self._clock, on_retry=on_retry)
        self.account: Final = AccountResource(self)

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> AccountClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own connection pool (a session passed in stays open)."""
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def base_url(self) -> str:
        return str(self._transport.base_url)

    @property
    def key_gate(self) -> KeyGate:
        return self._gate

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retrier.policy

    @property
    def timeout(self) -> Timeout:
        return self._timeout

    def __repr__(self) -> str:
        hint = key_hint(self._api_key) if self._api_key else None
        return f"AccountClient(base_url={self.base_url!r}, api_key={hint!r})"

    # -- the call path ---------------------------------------------------------------

    def _url(self, path: str) -> URL:
        return self._transport.url(path)

    def _key(self, api_key: str | None) -> str:
        if api_key is not None:
            return check_key(api_key)
        if self._api_key is None:
            raise ConfigurationError(
                "no API key: pass api_key=... or set $ACCOUNTAPI_API_KEY (or $DEPICTA_API_KEY)"
            )
        return self._api_key

    async def _request(
        self,
        method: str,
        url: URL,
        parse: Callable[[RawResponse], T],
        api_key: str | None,
        timeout: Timeout | float | NotGiven | None,
        *,
        key_checked: bool = False,
    ) -> tuple[T, int]:
        """One API call for one key: gate, attempt, map status, retry, decode.

        Returns the decoded value and the number of attempts it took.
        """
        key = api_key if key_checked and api_key is not None else self._key(api_key)
        transport = self._transport
        session = transport.session()
        timeouts = self._timeout if timeout is NOT_GIVEN else Timeout.coerce(timeout)
        clock = self._clock
        gate = self._gate
        # The in-process gate can hand out a free slot synchronously: no coroutine to wait.
        try_acquire = self._try_acquire
        deadline = None if timeouts.total is None else clock.monotonic() + timeouts.total
        headers = self._default_headers if key is self._api_key else request_headers(key)

        async def attempt(number: int) -> T:
            remaining = None if deadline is None else deadline - clock.monotonic()
            if remaining is not None and remaining <= 0:
                raise APITimeoutError(
                    f"the call's deadline of {timeouts.total}s passed before attempt {number}",
                    request_sent=False,
                    retryable=False,
                )
            if try_acquire is None or not try_acquire(key):
                try:
                    await gate.acquire(key, remaining)
                except GateTimeout as exc:
                    raise APITimeoutError(
                        f"no request slot for the key before the call's deadline: {exc}",
                        request_sent=False,
                        retryable=False,
                    ) from None
            try:
                raw = await transport.request(session, method, url, headers, timeouts, remaining)
                if 200 <= raw.status < 300:
                    return parse(raw)
                error = error_for_status(raw.status, raw.headers, raw.body, now=clock.time())
                if raw.status == 429 and error.retry_after is not None:
                    # One cool-down for the key: queued and new calls wait it out too. It
                    # starts before the slot is released, so no other caller (in any
                    # process, with a shared gate) slips in between. Without a usable
                    # Retry-After each call backs off on its own jittered schedule.
                    await gate.cool_down(key, error.retry_after)
                raise error
            finally:
                gate.release(key)

        # The success path is this bare await; retries start only after a failure.
        try:
            return await attempt(1), 1
        except AccountAPIError as exc:
            exc.attempts = 1
            if not self._retrier.should_retry(exc):
                exc.key_hint = key_hint(key)
                raise
            first = exc
        try:
            return await self._retrier.retry(attempt, first, deadline=deadline, key=key)
        except AccountAPIError as exc:
            exc.key_hint = key_hint(key)
            raise

    # -- many keys ---------------------------------------------------------------------

    def balances(
        self,
        keys: KeySource,
        *,
        concurrency: int = 100,
        ordered: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        dedupe_window: int = 10_000,
    ) -> BalanceStream:
        """Check the profile behind every key; an async iterator of one ``BalanceResult`` per key.

        ``keys`` is any iterable or async iterable of str, read lazily: at most
        ``concurrency`` checks run at once (each also within the per-key limit and 429
        cool-down), so memory stays flat however many keys there are. Results come as
        they complete, or in input order with ``ordered=True`` (a reorder buffer of at
        most ``4 * concurrency`` results). Every failure (401, 402, exhausted retries, a
        malformed key) is that key's result; only cancellation escapes.

        A key already being checked is not requested again: later occurrences share its
        check, and so do occurrences within the last ``dedupe_window`` completed keys
        (0 turns that off). Duplicates further apart than the window are checked again.
        ``timeout`` applies to each key's call. Use ``async with client.balances(keys) as
        results:`` to cancel the checks still running when the block is left early.
        Concurrency above ``Limits.max_connections`` waits for pooled connections.
        """
        from ._bulk import BalanceStream

        return BalanceStream(
            self,
            keys,
            concurrency=concurrency,
            ordered=ordered,
            timeout=timeout,
            dedupe_window=dedupe_window,
        )
