"""Every use of aiohttp's private API, in one file.

The hooks, each checked when this module is imported (`check_hooks()`: an aiohttp
without one is an ImportError naming it, never a silent switch-off); the tests in
tests/test_edges.py and tests/test_pool.py fail if aiohttp stops honouring one:

- ``TCPConnector._factory`` (and the connector's ``_loop``): `GuardedConnector`
  builds its connections with `_Protocol` instead of ``ResponseHandler``.
- ``ResponseHandler`` subclassed, reading its ``_parser``: `_Protocol` knows whether
  the current request got any byte of an answer.
- ``TCPConnector.connect(req, traces, timeout)`` overridden: `GuardedConnector`
  checks each connection as the pool hands it out.
- ``ClientSession._retry_connection``: `never_resend()` switches off aiohttp's silent
  resend of a request on a dropped pooled connection.

And one of asyncio's, an optimisation with a logged fallback rather than a rule:

- ``_SelectorSocketTransport.max_size``: `_Protocol` lowers it to `READ_SIZE` on the
  plain-TCP connections of asyncio's own event loop (see there).

What they build: the connection pool's two rules of our own: a connection that spoke out
of turn is dropped, and a request is known to have had no answer at all when that is so.

One client session serves many keys, so a pooled keep-alive connection carries key A's
request and then key B's. HTTP/1.1 has no request ids: an answer belongs to a request
only by its place on the connection. If a server (or a broken proxy) sends bytes while
the connection sits idle in the pool, aiohttp buffers them and hands them to the next
request made on it, which may carry another key: B would receive A's balance.

`GuardedConnector` checks each connection as the pool hands it out. aiohttp's
protocol reports ``should_close`` once it holds any data no request has claimed (a
parsed answer in its buffer or raw bytes in its tail); such a connection is closed and
another one taken. The check runs after the pool's await and before aiohttp installs the
next request's parser, with no await in between, so nothing can arrive unseen there.

What remains, and cannot be told apart on the wire: bytes that arrive after the request
has been written but before the server could have answered it. Only a server that
answers requests it has not received yet can cause that.

Its connections also remember whether the request they carry has received any byte of
an answer. When one is closed or reset before the first byte, the failure is raised as
`NoAnswer`, so the transport can retry an idempotent read, which is safe only
then: after a byte, the service has certainly acted and started to answer. The session
using this connector must not resend requests on its own (see ``Transport.session``),
so that every request sent is one the SDK counts.
"""

from __future__ import annotations

import functools
import logging
from asyncio import selector_events
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

import aiohttp
from aiohttp.client_proto import ResponseHandler

if TYPE_CHECKING:
    from aiohttp.client_reqrep import ClientRequest
    from aiohttp.connector import Connection

__all__ = [
    "READ_SIZE",
    "GuardedConnector",
    "NoAnswer",
    "TunnelFailed",
    "UnsolicitedData",
    "check_hooks",
    "never_resend",
]

# asyncio's selector transport reads each chunk with sock.recv(max_size), max_size being
# 256 KiB: a fresh bytes object of that size per read, above glibc's 128 KiB mmap
# threshold, so every answer cost an mmap, an mremap to shrink it and a munmap (strace
# -c: three system calls per request, in raw aiohttp too). 64 KiB comes from the heap;
# an answer larger than that arrives in more reads. uvloop and TLS connections read
# into buffers of their own and are left alone.
READ_SIZE: Final = 64 * 1024
_SelectorSocketTransport: Final = getattr(selector_events, "_SelectorSocketTransport", None)
_READ_SIZE_HOOK: Final = isinstance(getattr(_SelectorSocketTransport, "max_size", None), int)
if not _READ_SIZE_HOOK:
    logging.getLogger("accountapi").debug(
        "asyncio's selector transport has no max_size: reads keep their default size"
    )

# A fresh connection that already holds bytes (a server talking before it is asked) is
# as unusable as a pooled one; after this many in a row the request fails instead of
# opening connections for ever.
_MAX_DISCARDS = 64


class UnsolicitedData(aiohttp.ClientConnectionError):
    """Every connection on offer held bytes sent before any request; nothing was sent."""


class TunnelFailed(aiohttp.ClientConnectionError):
    """The proxy broke off or garbled its answer to ``CONNECT``: the request never left.

    ``transient`` is true for a dropped or reset connection (worth another try), false
    for an answer that is not HTTP (a misconfigured proxy stays so).
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class NoAnswer(aiohttp.ServerDisconnectedError):
    """The connection was closed or reset before any byte of the answer arrived."""


class _Protocol(ResponseHandler):
    """aiohttp's protocol, knowing whether the current request got any byte of an answer.

    aiohttp installs a new parser for every request, before writing it, and drops it
    only after reporting a lost connection; so "the parser that last received bytes is
    the current one" means "this request has had a byte of its answer". That costs one
    store per chunk received, nothing per request.
    """

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self._fed: object = None

    def connection_made(self, transport: Any) -> None:
        if _READ_SIZE_HOOK and type(transport) is _SelectorSocketTransport:
            transport.max_size = READ_SIZE  # see READ_SIZE
        ResponseHandler.connection_made(self, transport)

    def data_received(self, data: bytes) -> None:
        self._fed = self._parser
        ResponseHandler.data_received(self, data)

    def set_exception(self, exc: BaseException, *args: Any, **kwargs: Any) -> None:
        if (self._fed is not self._parser or self._parser is None) and isinstance(
            exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError
        ):
            detail = "reset" if isinstance(exc, aiohttp.ClientOSError) else "closed"
            exc = NoAnswer(f"the connection was {detail} before any byte of the answer")
        ResponseHandler.set_exception(self, exc, *args, **kwargs)


class GuardedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` that never hands out a connection holding unsolicited bytes."""

    discarded: int
    """Connections closed because they held bytes no request asked for (for tests/metrics)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.discarded = 0
        # The protocol factory (see the hooks above).
        # The read-retry tests in tests/test_edges.py fail if aiohttp stops using it.
        self._factory = functools.partial(_Protocol, loop=self._loop)  # type: ignore[assignment]

    async def connect(
        self, req: ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Connection:
        try:
            conn = await _connect(self, req, traces, timeout)
        except aiohttp.ClientError as exc:
            # Nothing of the request is written before connect() returns: a proxy that
            # fails the CONNECT tunnel after accepting it has not seen the request.
            if req.proxy is None or isinstance(exc, _NOT_SENT_ALREADY):
                raise
            transient = isinstance(exc, _DROPPED)
            detail = exc.message if isinstance(exc, NoAnswer) else type(exc).__name__
            raise TunnelFailed(
                f"broke off the CONNECT tunnel ({detail})", transient=transient
            ) from None
        protocol = conn.protocol
        if protocol is None or not protocol.should_close:
            return conn
        return await self._replace(conn, req, traces, timeout)

    async def _replace(
        self,
        conn: Connection,
        req: ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,
    ) -> Connection:
        """Close ``conn`` (the bytes it holds go with it, unread) and take another."""
        for _ in range(_MAX_DISCARDS):
            self.discarded += 1
            conn.close()
            conn = await _connect(self, req, traces, timeout)
            protocol = conn.protocol
            if protocol is None or not protocol.should_close:
                return conn
        conn.close()
        raise UnsolicitedData(
            f"the server sent data before any request on {_MAX_DISCARDS} connections in a row"
        )


_connect = aiohttp.TCPConnector.connect
# Failures in connect() that already say the request never left, or carry a status.
_DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ServerTimeoutError)
_NOT_SENT_ALREADY = (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError, UnsolicitedData)


def never_resend(session: aiohttp.ClientSession) -> None:
    """Stop ``session`` from resending a request by itself when a pooled connection drops:
    every request sent must be one the SDK counts (``.attempts``, the retry policy)."""
    session._retry_connection = False


def _assigns(cls: type, name: str) -> bool:
    """Whether an ``__init__`` along ``cls``'s MRO stores ``self.<name>``."""
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None and name in code.co_names:
            return True
    return False


def _parameters(function: object) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return () if code is None else code.co_varnames[: code.co_argcount]


def check_hooks(aiohttp_module: ModuleType | Any) -> None:
    """Raise ImportError naming the first private hook of this file that ``aiohttp_module``
    (aiohttp, or a stand-in in a test) lacks, and its version. No hook has a safe
    fallback: without one, a connection could carry unsolicited bytes to another key's
    request, or a request could be sent twice and counted once."""
    connector = getattr(aiohttp_module, "TCPConnector", None)
    session = getattr(aiohttp_module, "ClientSession", None)
    proto = getattr(getattr(aiohttp_module, "client_proto", None), "ResponseHandler", None)
    missing = [
        hook
        for hook, present in (
            ("TCPConnector._factory", connector is not None and _assigns(connector, "_factory")),
            ("TCPConnector._loop", connector is not None and _assigns(connector, "_loop")),
            (
                "TCPConnector.connect(req, traces, timeout)",
                _parameters(getattr(connector, "connect", None))
                == ("self", "req", "traces", "timeout"),
            ),
            (
                "ClientSession._retry_connection",
                "_retry_connection" in getattr(session, "ATTRS", ()),
            ),
            ("client_proto.ResponseHandler._parser", hasattr(proto, "_parser")),
        )
        if not present
    ]
    if missing:
        version = getattr(aiohttp_module, "__version__", "(unknown version)")
        raise ImportError(
            f"accountapi relies on aiohttp's private {missing[0]}, which aiohttp {version} "
            "does not have; install an aiohttp version accountapi supports (pyproject.toml)"
        )


check_hooks(aiohttp)
