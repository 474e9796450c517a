"""The one I/O edge: the only module that talks to aiohttp's client.

It sends one request, reads at most a bounded body, and returns a plain
`RawResponse`. Every aiohttp or socket failure leaves here as an SDK error
([`APIConnectionError`][accountapi.APIConnectionError] or [`APITimeoutError`][accountapi.APITimeoutError]), so
nothing above this module ever sees an aiohttp exception, and no SDK error ever carries
an object whose ``repr`` holds the request headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Mapping
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from accountapi._config import Limits, Timeout
from accountapi._exceptions import (
    AccountAPIError,
    APIConnectionError,
    APITimeoutError,
    ClientStateError,
    ConfigurationError,
)
from accountapi._keys import Credential
from accountapi._version import __version__

from ._aiohttp_private import (
    GuardedConnector,
    NoAnswer,
    TunnelFailed,
    UnsolicitedData,
    never_resend,
)
from ._content import ACCEPT_ENCODING, UndecodableBody, decode_body, is_identity
from ._deadlines import AttemptDeadlines
from ._proxy import ProxyURL, env_proxy

__all__ = ["USER_AGENT", "RawResponse", "Transport", "request_headers"]

_NO_HEADERS: Final[Mapping[str, str]] = CIMultiDict()

USER_AGENT: Final = f"accountapi-python/{__version__} aiohttp/{aiohttp.__version__}"


def request_headers(key: str, defaults: tuple[tuple[str, str], ...] = ()) -> CIMultiDict[str]:
    """The headers of a request made with ``key``: the SDK's own three, then a client's
    ``default_headers`` (checked: none of them can be one of the three).

    Built once per key, as the ``CIMultiDict`` aiohttp converts any other mapping into on
    every request; aiohttp copies it, so one instance can serve many requests. Kept on the
    key's `Credential`, never in a variable of its own.
    """
    return CIMultiDict(
        (
            ("Authorization", "Bearer " + key),
            ("User-Agent", USER_AGENT),
            ("Accept-Encoding", ACCEPT_ENCODING),
            *defaults,
        )
    )


def _without(raw: RawResponse, secrets: tuple[str, ...]) -> RawResponse:
    """``raw`` with each of ``secrets`` (a proxy's password in its forms) masked as
    ``***`` in its headers and body; ``raw`` itself when none of them is there."""
    body = raw.body
    for secret in secrets:
        encoded = secret.encode("utf-8", "surrogateescape")
        if encoded in body:
            body = body.replace(encoded, b"***")
    headers = raw.headers
    if any(secret in value for value in headers.values() for secret in secrets):
        masked: CIMultiDict[str] = CIMultiDict()
        for name, value in headers.items():
            for secret in secrets:
                value = value.replace(secret, "***")
            masked.add(name, value)
        headers = CIMultiDictProxy(masked)
    if body is raw.body and headers is raw.headers:
        return raw
    return RawResponse(raw.status, headers, body, raw.truncated, raw.problem)


class RawResponse:
    """Status, headers and (possibly cut-off) body of one HTTP answer."""

    __slots__ = ("body", "headers", "problem", "status", "truncated")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        truncated: bool,
        problem: str | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        # True when the body, decoded, was larger than Limits.max_response_bytes: it was
        # not read (or inflated) further, and ``body`` holds at most the cap.
        self.truncated = truncated
        # Why the body could not be read at all (an encoding the SDK did not ask for);
        # ``body`` is then empty.
        self.problem = problem


def _client_timeout(
    timeout: Timeout, attempt: float | None, *, total: bool = False
) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for one attempt limited to ``attempt`` seconds.

    The attempt limit itself is enforced by `AttemptDeadlines` (one timer for all
    attempts), so aiohttp gets no ``total`` unless ``total=True`` (no task to cancel).
    """
    # "connect" maps to sock_connect so that waiting for a free pooled connection (a
    # client-side queue) is not mistaken for a service that cannot be reached.
    read = timeout.read
    if read is not None and attempt is not None and read >= attempt:
        # The attempt's deadline comes first anyway; aiohttp re-arms a sock_read timer
        # on every chunk received, which measurably costs CPU per request for nothing.
        read = None
    return aiohttp.ClientTimeout(
        total=attempt if total else None, sock_connect=timeout.connect, sock_read=read
    )


# Methods whose request may be sent again when its connection failed before any byte of
# the answer: reading a profile twice changes nothing. POST (dismiss) is not among them.
_RESEND_WHEN_UNANSWERED: Final = frozenset({"GET"})


def translate(
    exc: BaseException, method: str = "GET", proxy: ProxyURL | None = None
) -> AccountAPIError:
    """Turn an aiohttp/socket failure into the SDK's error, keeping only a safe message.

    With a ``proxy``, its password is masked in the message, whatever aiohttp put there.
    """
    error = _translate(exc, method, proxy)
    if proxy is not None:
        shown = proxy.hide(error.message)
        if shown != error.message:
            error.message = shown
            error.args = (shown,)
    return error


def _translate(exc: BaseException, method: str, proxy: ProxyURL | None) -> AccountAPIError:
    if isinstance(exc, NoAnswer):  # the service may have seen it, but never answered
        return APIConnectionError(
            f"{exc.message}; the service may have received the request",
            request_sent=True,
            retryable=method in _RESEND_WHEN_UNANSWERED,
        )
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(f"timed out connecting: {exc}", request_sent=False)
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return APITimeoutError("timed out waiting for the response", request_sent=True)
    if isinstance(exc, aiohttp.ClientSSLError):  # certificate or handshake failure: not transient
        return APIConnectionError(f"TLS error: {exc}", request_sent=False, retryable=False)
    if isinstance(exc, UnsolicitedData):  # a server talking before it is asked: never sent
        return APIConnectionError(str(exc), request_sent=False, retryable=False)
    if isinstance(exc, TunnelFailed):  # the CONNECT failed: the request itself never left
        return APIConnectionError(
            f"the proxy {proxy} {exc.message}", request_sent=False, retryable=exc.transient
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):  # refused, unreachable: never sent
        return APIConnectionError(
            f"cannot connect to the proxy {proxy}: {exc.os_error}", request_sent=False
        )
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS: never sent
        return APIConnectionError(f"cannot connect: {exc}", request_sent=False)
    if isinstance(exc, aiohttp.ClientResponseError):
        # Its repr carries request_info.headers (Authorization included): keep only the status.
        return APIConnectionError(
            f"invalid response ({type(exc).__name__}, status {exc.status})", request_sent=True
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return APIConnectionError(
            "server closed the connection before responding", request_sent=True
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return APIConnectionError(f"response body broken off: {exc}", request_sent=True)
    return APIConnectionError(f"connection failed: {type(exc).__name__}: {exc}", request_sent=True)


class Transport:
    """Owns (or borrows) one ``aiohttp.ClientSession`` and sends requests on it.

    A session passed in is used as-is and never closed here. Otherwise the session is
    created on first use inside the running loop, so a transport can be built with no loop
    running; using it from a second event loop raises [`ClientStateError`][accountapi.ClientStateError].
    """

    __slots__ = (
        "_closed",
        "_deadlines",
        "_limits",
        "_loop",
        "_max_bytes",
        "_owns_session",
        "_proxy_secrets",
        "_session",
        "_ssl",
        "_timeout",
        "_timeouts",
        "base_url",
        "proxy",
    )

    def __init__(
        self,
        *,
        base_url: str,
        timeout: Timeout,
        limits: Limits,
        ssl: ssl_module.SSLContext | None = None,
        trust_env: bool = False,
        proxy: ProxyURL | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = URL(base_url)
        if proxy is None and trust_env and session is None:
            # Read once, here, so a bad value is a ConfigurationError when the client is
            # built. The session itself never trusts the environment: aiohttp would also
            # add a netrc login for the service's host, and refuse our Authorization.
            proxy = env_proxy(self.base_url)
        self.proxy = proxy
        # A proxy may echo the Proxy-Authorization it was sent: its answers lose it.
        self._proxy_secrets = () if proxy is None else proxy.secrets
        self._timeouts = timeout
        self._timeout = _client_timeout(timeout, timeout.attempt)
        self._deadlines = AttemptDeadlines()
        self._limits = limits
        self._max_bytes = limits.max_response_bytes
        self._ssl = ssl
        self._session = session
        self._owns_session = session is None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def url(self, path: str) -> URL:
        """An absolute URL for ``path`` under the base URL (built once per endpoint)."""
        return self.base_url.with_path(self.base_url.path.rstrip("/") + path)

    @property
    def closed(self) -> bool:
        return self._closed

    def session(self, loop: asyncio.AbstractEventLoop | None = None) -> aiohttp.ClientSession:
        """The session for the running loop (``loop``, when the caller knows it is running
        it), created on first use.

        Raises [`ClientStateError`][accountapi.ClientStateError] once closed, or from a loop other than the one
        the client's own session was created in.
        """
        if self._closed:
            raise ClientStateError("the client is closed; create a new AccountClient")
        session = self._session
        if session is not None and not self._owns_session:
            if session.closed:
                raise ClientStateError(
                    "the aiohttp session passed as session= is closed; pass an open one"
                )
            return session
        if loop is None:
            loop = asyncio.get_running_loop()
        if session is not None:
            if loop is self._loop:
                return session
            raise ClientStateError(
                "this AccountClient is bound to another event loop; "
                "create one client per event loop (e.g. per asyncio.run call)"
            )
        # Never reuses a connection that received bytes while idle (see _aiohttp_private).
        connector = GuardedConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            # Verification is always on: the default context, or the caller's own.
            ssl=self._ssl if self._ssl is not None else True,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            # Every request goes through the proxy, if any; env proxies were read in
            # __init__. trust_env stays off: see there.
            proxy=None if self.proxy is None else self.proxy.url,
            raise_for_status=False,
            # One session serves many keys: a cookie set in answer to one key must never
            # ride along with another key's requests. The API authenticates by header only.
            cookie_jar=aiohttp.DummyCookieJar(),
            # Bodies are inflated (if at all) by _content.decode_body, within the size cap.
            auto_decompress=False,
        )
        # aiohttp resends an idempotent request once, silently, when a pooled connection
        # drops; the SDK makes that decision itself (counted in .attempts, under the retry
        # policy and deadline), so it is switched off on the session the SDK owns.
        never_resend(session)
        self._session = session
        self._loop = loop
        return session

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        key: Credential,
        timeouts: Timeout,
        remaining: float | None,
        task: asyncio.Task[Any] | None,
    ) -> RawResponse:
        """Send one request with ``key`` on ``session``; return its answer or raise an SDK error.

        ``key.headers`` are sent as they are: the call path built them (`request_headers()`,
        with the client's default headers) once per key. The attempt is limited by
        ``timeouts`` and by ``remaining``, the seconds left before the whole call's
        deadline; ``task`` (the one running the request, None outside a task) is what
        the attempt deadline cancels. Errors are raised with no exception chained:
        aiohttp's exceptions and frames hold the request headers.
        """
        failure: AccountAPIError
        limit = timeouts.attempt
        if remaining is not None and (limit is None or remaining < limit):
            limit = remaining
        deadlines = self._deadlines
        if limit is None or task is None:
            task = None
        else:
            deadlines.enter(task, limit)
        # Everything after enter() is inside the try, so leave() runs whatever happens: a
        # task left registered could be cancelled later, outside any attempt.
        try:
            timed_here = task is not None or limit is None  # aiohttp need not time it
            if timeouts is self._timeouts and limit == timeouts.attempt and timed_here:
                timeout = self._timeout  # built once: the common case
            else:
                # Outside a task (no task with a limit) aiohttp times the attempt itself.
                timeout = _client_timeout(timeouts, limit, total=not timed_here)
            if timeout is self._timeout and self._owns_session:
                # Our own session already has this timeout, never raises for status and
                # never decompresses; leaving those arguments out saves aiohttp work.
                context = session.request(method, url, headers=key.headers, allow_redirects=False)
            else:
                context = session.request(
                    method,
                    url,
                    headers=key.headers,
                    allow_redirects=False,
                    timeout=timeout,
                    raise_for_status=False,
                    auto_decompress=False,
                )
            # Awaited, not entered: `async with` costs aiohttp four more coroutines per
            # request, and its exit does no more than release() for a request without a
            # body. release() pools the connection only if the answer was read to its
            # end; otherwise (cut off, cancelled, failed) the connection is closed.
            resp = await context
            try:
                length = resp.content_length
                if length is not None and length <= self._max_bytes:
                    body = await resp.read()
                    truncated = False
                else:
                    body, truncated = await self._read_capped(resp, length)
                encoding = resp.headers.get("Content-Encoding")
                if encoding is None or truncated or is_identity(encoding):
                    answer = RawResponse(resp.status, resp.headers, body, truncated)
                else:
                    try:
                        body, truncated = decode_body(body, encoding, self._max_bytes)
                    except UndecodableBody as exc:
                        answer = RawResponse(
                            resp.status, resp.headers, b"", False, problem=str(exc)
                        )
                    else:
                        answer = RawResponse(resp.status, resp.headers, body, truncated)
            finally:
                resp.release()
            secrets = self._proxy_secrets
            return answer if not secrets else _without(answer, secrets)
        except asyncio.CancelledError:
            if task is not None and deadlines.expired(task):
                # Whether the request had left is unknown here (it may have been
                # waiting for a pooled connection): assume it did, so it is not retried.
                failure = APITimeoutError(
                    f"timed out waiting for the response (attempt limit {limit:g}s)",
                    request_sent=True,
                )
            else:
                raise
        except aiohttp.ClientHttpProxyError as exc:
            # The proxy answered CONNECT itself (407, 502, 503...): a status like any
            # other, as it is when a proxy answers a plain http:// request.
            answer = RawResponse(exc.status, exc.headers or _NO_HEADERS, b"", False)
            return _without(answer, self._proxy_secrets)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            failure = translate(exc, method, self.proxy)
        except ValueError as exc:
            # aiohttp refuses to send our Authorization beside a login of its own: a
            # session passed in with auth= (refused at construction, but it can be set
            # later) or trust_env=True and a netrc entry for the service's host.
            if self._owns_session or "AUTHORIZATION" not in str(exc):
                raise
            failure = ConfigurationError(
                "the aiohttp session passed as session= adds a login of its own (its "
                f"auth=, or trust_env=True with a netrc entry for {self.base_url.host}), "
                "which would replace the API key; pass a session without either"
            )
        except RuntimeError:
            # aiohttp's "Session is closed": a caller's session closed under us, or ours
            # closed by aclose() while this call waited for a connection.
            if not session.closed:
                raise
            failure = ClientStateError(
                "the aiohttp session is closed; "
                "create a new AccountClient (or pass an open session=)"
            )
        finally:
            if task is not None:
                deadlines.leave(task)
        # Raised outside the except blocks, so no aiohttp exception is its __context__ or
        # __cause__: their reprs and their frames' locals hold the request headers.
        raise failure

    async def _read_capped(
        self, resp: aiohttp.ClientResponse, length: int | None
    ) -> tuple[bytes, bool]:
        """Read an unknown-length body up to the cap; a larger one is cut off, not buffered."""
        cap = self._max_bytes
        if length is not None:  # announced as larger than the cap: read nothing
            return b"", True
        chunks: list[bytes] = []
        size = 0
        while size <= cap:
            chunk = await resp.content.read(cap + 1 - size)
            if not chunk:
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
        # Leaving the response unread makes aiohttp drop the connection instead of
        # pooling it, so the rest of the body is never read into memory.
        return b"".join(chunks)[:cap], True

    async def aclose(self) -> None:
        """Close the session if this transport created it; idempotent.

        Must run in the loop the session was used in while that loop is alive.
        """
        session = self._session
        if session is None or not self._owns_session:
            self._closed = True
            self._deadlines.close()
            return
        bound = self._loop
        if bound is not None and not bound.is_closed() and asyncio.get_running_loop() is not bound:
            raise ClientStateError("close the client in the event loop it was used in")
        self._closed = True
        self._session = None
        self._deadlines.close()
        with contextlib.suppress(RuntimeError):  # its loop is gone; the sockets went with it
            await session.close()

    def __repr__(self) -> str:
        proxy = "" if self.proxy is None else f", proxy={self.proxy.shown!r}"
        return f"Transport(base_url={str(self.base_url)!r}{proxy})"
