"""A raw HTTP/1.1 server on a loopback port for tests that need what the emulator never sends.

Each connection is handed to ``respond(request_head, reader, writer)``, which writes any
bytes it likes; the server counts the requests it read and records their heads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from accountapi.testing import default_profile

Respond = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """Counts connections and requests; ``heads`` holds each request's header block."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.heads: list[bytes] = []
        self.connections = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        return len(self.heads)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length:
                    await reader.readexactly(length)
                await self.respond(head, reader, writer)
                if writer.is_closing():
                    return
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(respond: Respond) -> AsyncIterator[RawServer]:
    """Serve ``respond`` on 127.0.0.1 (an ephemeral port) for the duration of the block."""
    async with serve(RawServer(respond)) as server:
        yield server


@asynccontextmanager
async def serve(server: RawServer) -> AsyncIterator[RawServer]:
    """Serve an existing :class:`RawServer` (whose ``respond`` may look at its counts)."""
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


def response(
    status: int = 200,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    reason: str = "OK",
) -> bytes:
    """One complete HTTP/1.1 response with a Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if not any(name.lower() == "content-type" for name in headers or {}):
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def profile_body(**fields: Any) -> bytes:
    """A valid profile answer, with ``fields`` over the emulator's default profile."""
    user = default_profile()
    user.update(fields)
    return json.dumps({"user": user}).encode()
