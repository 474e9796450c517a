"""A real forwarding HTTP proxy on a loopback port, for the proxy tests.

It forwards absolute-form requests (``GET http://127.0.0.1:PORT/v1/... HTTP/1.1``) to
their origin, one request per connection, and tunnels ``CONNECT host:port`` for https.
It counts what it forwarded, records each request line and the ``Proxy-Authorization``
it saw, strips that header before forwarding (as a real proxy does), and can be told to
misbehave for the next requests: ``drop`` (close without a byte), ``garbage`` (answer
with something that is not HTTP), ``cut`` (forward, then close in the middle of the
answer) or a status of its own (``502``, ``407``...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from yarl import URL

FORWARD = "forward"
DROP = "drop"
GARBAGE = "garbage"
CUT = "cut"


class ForwardProxy:
    """The proxy's state: what it saw, and what it will do with the next requests."""

    def __init__(self, *, login: tuple[str, str] | None = None) -> None:
        self.login = login
        self.port = 0
        self.request_lines: list[str] = []
        self.heads: list[bytes] = []
        self.proxy_authorizations: list[str | None] = []
        self.forwarded = 0  # requests passed on to their origin (CONNECT tunnels included)
        self.connections = 0
        self._plan: deque[str | int] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with_login(self) -> str:
        assert self.login is not None
        user, password = self.login
        return str(
            URL.build(scheme="http", user=user, password=password, host="127.0.0.1", port=self.port)
        )

    def script(self, actions: Iterable[str | int]) -> None:
        """What to do with the next requests, in order; then forward again."""
        self._plan.extend(actions)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        lines = head.decode("latin-1").split("\r\n")
        request_line, fields = lines[0], [line for line in lines[1:] if line]
        self.request_lines.append(request_line)
        seen = None
        kept: list[str] = []
        length = 0
        for field in fields:
            name, _, value = field.partition(":")
            lowered = name.strip().lower()
            if lowered == "proxy-authorization":
                seen = value.strip()
            elif lowered in ("proxy-connection", "connection", "keep-alive"):
                continue
            else:
                if lowered == "content-length":
                    length = int(value)
                kept.append(field)
        self.proxy_authorizations.append(seen)
        body = await reader.readexactly(length) if length else b""
        action = self._plan.popleft() if self._plan else FORWARD
        if self.login is not None and seen != _basic(*self.login):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n'
                b"Connection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if action == DROP:
            return
        if action == GARBAGE:
            writer.write(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")
            await writer.drain()
            return
        if isinstance(action, int):
            writer.write(
                f"HTTP/1.1 {action} From The Proxy\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return
        method, target, _ = request_line.split(" ", 2)
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
        else:
            await self._forward(method, target, kept, body, writer, cut=action == CUT)

    async def _forward(
        self,
        method: str,
        target: str,
        fields: list[str],
        body: bytes,
        writer: asyncio.StreamWriter,
        *,
        cut: bool,
    ) -> None:
        url = URL(target)
        assert url.host is not None, target
        assert url.port is not None, target
        up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
        try:
            self.forwarded += 1
            head = "\r\n".join(
                [f"{method} {url.raw_path_qs} HTTP/1.1", *fields, "Connection: close", "", ""]
            )
            up_writer.write(head.encode("latin-1") + body)
            await up_writer.drain()
            answer_head = await up_reader.readuntil(b"\r\n\r\n")
            answer_lines = [
                line
                for line in answer_head.decode("latin-1").split("\r\n")
                if line and not line.lower().startswith(("connection:", "keep-alive:"))
            ]
            writer.write(
                "\r\n".join([*answer_lines, "Connection: close", "", ""]).encode("latin-1")
            )
            rest = await up_reader.read()
            writer.write(rest[: len(rest) // 2] if cut else rest)
            await writer.drain()
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        try:
            self.forwarded += 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()

    async def aclose(self) -> None:
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@asynccontextmanager
async def forward_proxy(*, login: tuple[str, str] | None = None) -> AsyncIterator[ForwardProxy]:
    """A running :class:`ForwardProxy` on 127.0.0.1; closed (connections too) on exit."""
    proxy = ForwardProxy(login=login)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        await proxy.aclose()
        await server.wait_closed()
