"""The client: wires keys, gate, retries, transport and decoding into one call path."""

from __future__ import annotations

import ssl as ssl_module
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp
    from yarl import URL

from ._account import AccountResource
from ._budget import RetryBudget
from ._bulk import DEFAULT_CONCURRENCY, DEFAULT_DEDUPE_WINDOW, BalanceStream, KeySource
from ._call_options import check_coalesce
from ._calls import CallPath
from ._clock import Clock, default_clock
from ._config import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY,
    NOT_GIVEN,
    Limits,
    NotGiven,
    RetryPolicy,
    Timeout,
    resolve_max_retries,
)
from ._events import RetryEvent
from ._exceptions import ClientStateError, ConfigurationError
from ._headers import check_user_headers
from ._http._proxy import check_proxy_url
from ._http._transport import Transport
from ._keys import Credential, resolve_api_key, resolve_base_url
from ._log import setup_from_env
from ._retry import Retrier
from ._urls import check_base_url
from .gates import KeyGate, MemoryKeyGate

__all__ = ["AccountClient"]


class AccountClient:
    """An asyncio client for the account API: one connection pool, any number of keys.

    Use it as ``async with AccountClient() as client:`` (or call [`aclose()`][accountapi.AccountClient.aclose]). Build it
    anywhere, with or without a running loop; its aiohttp session is created inside the
    loop on first use. One client serves many API keys: pass ``api_key=`` per call to use
    another key on the same pool, gate and retry policy.

    Arguments (all but ``api_key`` keyword-only):

    - ``api_key``: default key for calls; falls back to ``$ACCOUNTAPI_API_KEY``, then
      ``$DEPICTA_API_KEY``. May stay unset when every call passes its own key.
    - ``base_url``: falls back to ``$ACCOUNTAPI_BASE_URL``, ``$DEPICTA_API_URL``, then
      ``https://api.depicta.ai``. Plain ``http://`` only for loopback hosts unless
      ``allow_insecure_http=True``.
    - ``timeout``: a [`Timeout`][accountapi.Timeout], a number (the whole call's deadline in seconds) or
      ``None`` (no limits at all). Default: ``Timeout()``.
    - ``max_retries``: how many times a call is retried after its first attempt
      (429, 502, 503 and failed connects only; default 4); ``0`` turns retrying off.
      The one place to set it (also per call, and in [`with_options()`][accountapi.AccountClient.with_options]).
    - ``retry``: how long to wait between attempts ([`RetryPolicy`][accountapi.RetryPolicy]).
    - ``limits``: pool size, per-key concurrency (default 10, the service's maximum) and
      the largest response body read ([`Limits`][accountapi.Limits]).
    - ``session``: an ``aiohttp.ClientSession`` to use instead of the client's own; it is
      never closed by the SDK. (The client's own session keeps no cookies; give yours
      ``cookie_jar=aiohttp.DummyCookieJar()`` if it serves many keys.) A session
      with a login of its own (``auth=``) is a [`ConfigurationError`][accountapi.ConfigurationError]: the API
      key is the login. ``ssl``, ``trust_env`` and ``proxy`` are then set on it instead.
    - ``ssl``: an ``ssl.SSLContext`` to verify the service with (for a private CA):
      ``ssl.create_default_context(cafile=...)``. Verification cannot be turned off: a
      context that skips the certificate or host name check is a
      [`ConfigurationError`][accountapi.ConfigurationError].
    - ``trust_env``: take the proxy from the environment (off by default), read once
      here: ``$HTTPS_PROXY`` (``$HTTP_PROXY`` for an ``http://`` base URL), none for a
      host in ``$NO_PROXY``, the proxy's login from netrc. A netrc entry for the service
      itself is not used: the SDK's bearer header always wins.
    - ``proxy``: an ``http://[user:password@]host[:port]`` proxy (str or ``yarl.URL``)
      for every request; ``https://`` calls are tunnelled through it with ``CONNECT``.
      Overrides ``trust_env``'s proxy. Shown, in reprs and errors, without credentials.
    - ``default_headers``: headers sent with every call (an ``X-Correlation-Id``, a
      tenant tag). The SDK's own ``Authorization``, ``Accept-Encoding`` and
      ``User-Agent`` cannot be set this way, nor connection headers (``Host``,
      ``Connection``, ``Content-Length``...): naming one is a [`ConfigurationError`][accountapi.ConfigurationError].
      A call's ``extra_headers`` add to them and replace a value of the same name.
    - ``on_retry``: called with a [`RetryEvent`][accountapi.RetryEvent] before each retry's wait.
    - ``clock``: the time source and sleep (tests pass
      [`accountapi.testing.VirtualClock`][accountapi.testing.VirtualClock] to make waits instant).
    - ``key_gate``: the per-key admission control ([`KeyGate`][accountapi.gates.KeyGate]); defaults to an
      in-process [`MemoryKeyGate`][accountapi.gates.MemoryKeyGate] with ``limits.per_key`` slots. A gate you pass
      has its own ``per_key``: a non-default ``Limits.per_key`` that differs from it is
      a [`ConfigurationError`][accountapi.ConfigurationError].
    - ``retry_budget``: the [`RetryBudget`][accountapi.RetryBudget] every retry of this
      client (and of its ``with_options()`` clients and ``balances()``) draws from;
      default a new ``RetryBudget()``; ``None`` turns it off. A first attempt never draws.
    - ``coalesce``: ``profile()`` calls join an identical read not yet sent instead of
      sending their own (off by default; also per call and in ``with_options()``).
    """

    __slots__ = (
        "_budget",
        "_calls",
        "_default_key",
        "_gate",
        "_limits",
        "_retrier",
        "_timeout",
        "_transport",
        "account",
    )

    account: AccountResource
    """The account calls: ``profile()``, ``dismiss_notifications()``, and
    ``with_response`` for the same calls with their HTTP answer."""

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
        proxy: str | URL | None = None,
        allow_insecure_http: bool = False,
        on_retry: Callable[[RetryEvent], None] | None = None,
        clock: Clock | None = None,
        key_gate: KeyGate | None = None,
        default_headers: Mapping[str, str] | None = None,
        retry_budget: RetryBudget | NotGiven | None = NOT_GIVEN,
        coalesce: bool = False,
    ) -> None:
        # The key is held as a Credential from here on: an error raised below (a bad
        # base URL, say) must not find it among this frame's locals.
        key = None if api_key is None else Credential(api_key)
        del api_key
        if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
            raise ConfigurationError(
                "ssl must be an ssl.SSLContext (verification cannot be switched off)"
            )
        if ssl is not None and (
            ssl.verify_mode != ssl_module.CERT_REQUIRED or not ssl.check_hostname
        ):
            raise ConfigurationError(
                "ssl must verify the service's certificate and host name "
                "(verify_mode=CERT_REQUIRED, check_hostname=True); verification cannot "
                "be switched off. For a private CA: ssl.create_default_context(cafile=...)"
            )
        # Like the key, the proxy's password leaves this frame's locals at once.
        checked_proxy = None if proxy is None else check_proxy_url(proxy)
        del proxy
        if session is not None and (ssl is not None or trust_env or checked_proxy is not None):
            raise ConfigurationError(
                "ssl, trust_env and proxy configure the client's own session; "
                "set them on the aiohttp.ClientSession you pass instead"
            )
        if session is not None and session.auth is not None:
            raise ConfigurationError(
                "the aiohttp session passed as session= has auth= set, which would replace "
                "the API key on every request; pass a session without auth= (the SDK sends "
                "the key as its Authorization header)"
            )
        default_key = resolve_api_key(key)
        if default_key is not None:
            default_key.check()
        base = check_base_url(resolve_base_url(base_url), allow_insecure_http=allow_insecure_http)
        setup_from_env()  # $ACCOUNTAPI_LOG
        self._timeout = Timeout.coerce(timeout)
        policy = DEFAULT_RETRY if isinstance(retry, NotGiven) else retry
        if not isinstance(policy, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        retries = resolve_max_retries(max_retries, policy, DEFAULT_MAX_RETRIES)
        headers = (
            ()
            if default_headers is None
            else check_user_headers(default_headers, "default_headers")
        )
        self._limits = DEFAULT_LIMITS if isinstance(limits, NotGiven) else limits
        if not isinstance(self._limits, Limits):
            raise ConfigurationError("limits must be a Limits")
        clock = clock if clock is not None else default_clock()
        if key_gate is None:
            key_gate = MemoryKeyGate(self._limits.per_key, clock=clock)
        elif not isinstance(key_gate, KeyGate):
            raise ConfigurationError(
                "key_gate must be a KeyGate (acquire, release, cool_down, in_flight)"
            )
        elif (
            self._limits.per_key != DEFAULT_LIMITS.per_key
            and getattr(key_gate, "per_key", None) != self._limits.per_key
        ):
            raise ConfigurationError(
                f"Limits(per_key={self._limits.per_key}) does not apply to a key_gate you "
                "pass; set per_key on the gate itself"
            )
        self._gate: KeyGate = key_gate
        self._default_key = default_key
        self._transport = Transport(
            base_url=base,
            timeout=self._timeout,
            limits=self._limits,
            ssl=ssl,
            trust_env=trust_env,
            proxy=checked_proxy,
            session=session,
        )
        if isinstance(retry_budget, NotGiven):
            retry_budget = RetryBudget()
        elif retry_budget is not None and not isinstance(retry_budget, RetryBudget):
            raise ConfigurationError("retry_budget must be a RetryBudget or None")
        self._budget = retry_budget
        self._retrier = Retrier(
            policy, max_retries=retries, clock=clock, on_retry=on_retry, budget=retry_budget
        )
        self._calls = CallPath(
            transport=self._transport,
            gate=key_gate,
            retrier=self._retrier,
            clock=clock,
            timeout=self._timeout,
            default_key=default_key,
            headers=headers,
            coalesce=check_coalesce(coalesce),
        )
        self.account = AccountResource(self._calls)

    def with_options(
        self,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
        coalesce: bool | NotGiven = NOT_GIVEN,
    ) -> AccountClient:
        """This client with other defaults, on the same pool, key gate, retry budget,
        clock, hooks and telemetry:
        ``client.with_options(timeout=2, max_retries=0).account.profile()``.

        Cheap enough to call per request. Options not given are this client's;
        ``default_headers`` are added to this client's (a name given again takes the new
        value). The derived client is the same client underneath: closing either closes
        both, and [`aclose()`][accountapi.AccountClient.aclose] on either ends the calls of both.
        """
        key = self._default_key if isinstance(api_key, NotGiven) else Credential(api_key)
        del api_key
        if key is not None:
            key.check()
            # Its own copy: a key's request headers are built with its client's defaults.
            key = key.fresh()
        headers = self._calls.headers
        if default_headers is not None:
            extra = check_user_headers(default_headers, "default_headers")
            names = {name.lower() for name, _ in extra}
            headers = tuple(h for h in headers if h[0].lower() not in names) + extra
        retrier = self._retrier
        if not isinstance(retry, NotGiven) or not isinstance(max_retries, NotGiven):
            policy = retrier.policy if isinstance(retry, NotGiven) else retry
            if not isinstance(policy, RetryPolicy):
                raise ConfigurationError("retry must be a RetryPolicy")
            # This client's policy was resolved into its count when it was built: only a
            # policy given here can say max_retries twice (its deprecated field).
            given = DEFAULT_RETRY if isinstance(retry, NotGiven) else policy
            retries = resolve_max_retries(max_retries, given, retrier.max_retries)
            retrier = retrier.with_policy(policy, retries)
        timeouts = self._timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)
        shares = (
            self._calls.coalesce if isinstance(coalesce, NotGiven) else check_coalesce(coalesce)
        )
        derived = object.__new__(AccountClient)
        derived._budget = self._budget
        derived._transport = self._transport
        derived._gate = self._gate
        derived._limits = self._limits
        derived._default_key = key
        derived._timeout = timeouts
        derived._retrier = retrier
        derived._calls = self._calls.derive(
            retrier=retrier, timeout=timeouts, default_key=key, headers=headers, coalesce=shares
        )
        derived.account = AccountResource(derived._calls)
        return derived

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
        """Close the client: end every call in progress, then its own connection pool.

        Calls queued for a key slot, on the wire or waiting out a retry's wait raise
        [`ClientStateError`][accountapi.ClientStateError] at once (their slots given back), as do calls made
        afterwards. A session passed in as ``session=`` stays open. Idempotent; must run
        in the event loop the client was used in.
        """
        await self._calls.aclose()
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once the client is closed (by ``aclose()`` or leaving ``async with``)."""
        return self._transport.closed

    @property
    def base_url(self) -> str:
        """The service's base URL calls go to (without ``/v1``)."""
        return str(self._transport.base_url)

    @property
    def key_gate(self) -> KeyGate:
        """The per-key gate every call of this client (and its ``with_options()`` copies) goes through."""
        return self._gate

    @property
    def retry_policy(self) -> RetryPolicy:
        """How long calls wait before trying again."""
        return self._retrier.policy

    @property
    def max_retries(self) -> int:
        """How many times a call is retried after its first attempt (unless it says otherwise)."""
        return self._retrier.max_retries

    @property
    def retry_budget(self) -> RetryBudget | None:
        """The retry budget this client's retries draw from (None: off); read its
        ``level`` and ``refused`` to see how an outage is going."""
        return self._budget

    @property
    def coalesce(self) -> bool:
        """Whether ``profile()`` joins an identical read not yet sent (unless the call
        says otherwise)."""
        return self._calls.coalesce

    @property
    def default_headers(self) -> Mapping[str, str]:
        """The headers every call sends besides the SDK's own (a read-only copy)."""
        return MappingProxyType(dict(self._calls.headers))

    @property
    def timeout(self) -> Timeout:
        """The timeouts calls get unless they pass their own."""
        return self._timeout

    def __repr__(self) -> str:
        # Also called on a half-built client (error trackers render every frame's locals).
        key = getattr(self, "_default_key", None)
        transport = getattr(self, "_transport", None)
        base = str(transport.base_url) if transport is not None else None
        return f"AccountClient(base_url={base!r}, api_key={None if key is None else key.hint!r})"

    # -- many keys ---------------------------------------------------------------------

    def balances(
        self,
        keys: KeySource,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
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
        if self.closed:
            raise ClientStateError("the client is closed; create a new AccountClient")
        return BalanceStream(
            self._calls,
            keys,
            concurrency=concurrency,
            ordered=ordered,
            timeout=timeout,
            dedupe_window=dedupe_window,
        )
