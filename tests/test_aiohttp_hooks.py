"""The import-time check of the private aiohttp hooks (accountapi/_http/_aiohttp_private.py):
the installed aiohttp passes it, and a stand-in lacking any one hook is an ImportError that
names the hook and the version. A unit test of our check, with no aiohttp patched."""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from rawserver import profile_body, raw_server, response

from accountapi import AccountClient
from accountapi._http._aiohttp_private import READ_SIZE, _Protocol, check_hooks
from accountapi.testing import default_profile

KEY = "dpct_" + "R" * 28 + "z9Q4"


def _init_all(self: Any) -> None:
    self._factory = object()
    self._loop = object()


def _init_without_factory(self: Any) -> None:
    self._loop = object()


def _init_without_loop(self: Any) -> None:
    self._factory = object()


async def _connect(self: Any, req: object, traces: object, timeout: object) -> None:
    pass


async def _connect_renamed(self: Any, request: object, traces: object, timeout: object) -> None:
    pass


def _stand_in(*, without: str = "") -> Any:
    """An object shaped like the parts of aiohttp the hooks use, less the one named."""
    inits = {"_factory": _init_without_factory, "_loop": _init_without_loop}
    base = type("BaseConnector", (), {"__init__": inits.get(without, _init_all)})
    connect = _connect_renamed if without == "connect" else _connect
    connector = type("TCPConnector", (base,), {"connect": connect})
    attrs = frozenset() if without == "_retry_connection" else frozenset({"_retry_connection"})
    session = type("ClientSession", (), {"ATTRS": attrs})
    handler = type("ResponseHandler", (), {} if without == "_parser" else {"_parser": None})
    return SimpleNamespace(
        __version__="9.9.9",
        TCPConnector=connector,
        ClientSession=session,
        client_proto=SimpleNamespace(ResponseHandler=handler),
    )


def test_the_installed_aiohttp_has_every_hook() -> None:
    """The aiohttp this runs on (the newest, or the floor in .ci/run) passes the check."""
    check_hooks(aiohttp)


def test_a_complete_stand_in_passes() -> None:
    """The stand-in with every hook passes, so the cases below fail for the one left out."""
    check_hooks(_stand_in())


@pytest.mark.parametrize(
    ("without", "named"),
    [
        ("_factory", "TCPConnector._factory"),
        ("_loop", "TCPConnector._loop"),
        ("connect", "TCPConnector.connect(req, traces, timeout)"),
        ("_retry_connection", "ClientSession._retry_connection"),
        ("_parser", "client_proto.ResponseHandler._parser"),
    ],
)
def test_a_missing_hook_is_an_import_error_naming_it_and_the_version(
    without: str, named: str
) -> None:
    """Each hook missing in turn: ImportError with the hook's name and aiohttp's version."""
    with pytest.raises(ImportError) as raised:
        check_hooks(_stand_in(without=without))
    message = str(raised.value)
    assert named in message
    assert "aiohttp 9.9.9" in message


# -- the read size of asyncio's own transport (an optimisation, not a rule of the pool) --


def test_the_read_size_hook_is_there_on_this_python() -> None:
    """asyncio's selector transport still reads ``max_size`` bytes at a time (256 KiB);
    if it stops, the hook is skipped (with a debug line at import), and this test says so."""
    import asyncio.selector_events

    from accountapi._http import _aiohttp_private

    assert _aiohttp_private._READ_SIZE_HOOK
    transport_class: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport")  # noqa: B009 - private, untyped
    assert transport_class.max_size > READ_SIZE


async def test_a_plain_connection_reads_below_the_mmap_threshold() -> None:
    """Our protocol sets its selector transport to read at most READ_SIZE bytes per recv(),
    under glibc's 128 KiB mmap threshold (so no mmap/munmap per answer)."""
    assert READ_SIZE <= 128 * 1024
    loop = asyncio.get_running_loop()
    async with raw_server(_silent) as server:
        transport, _ = await loop.create_connection(
            functools.partial(_Protocol, loop), "127.0.0.1", server.port
        )
        try:
            assert transport.max_size == READ_SIZE  # type: ignore[attr-defined]
        finally:
            transport.close()


async def _silent(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass


async def test_an_answer_larger_than_one_read_arrives_whole() -> None:
    """A 600 KiB profile answer (an unknown field padding it) takes many reads of
    READ_SIZE; it arrives whole and decodes."""
    body = profile_body(padding="x" * (600 * 1024))
    assert len(body) > 8 * READ_SIZE

    async def big(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(response(200, body))
        await writer.drain()

    async with raw_server(big) as server, AccountClient(KEY, base_url=server.url) as client:
        profile = await client.account.profile()
    assert profile.balance_eur == Decimal(default_profile()["balance_eur"])
    assert server.requests == 1


def _chunked_gzip(body: bytes, segment: int) -> list[bytes]:
    """A chunked, gzip-encoded 200 answer carrying ``body``, cut into ``segment``-byte writes."""
    import gzip

    packed = gzip.compress(body, compresslevel=1)
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(packed[i : i + 5000]), packed[i : i + 5000])
        for i in range(0, len(packed), 5000)
    )
    wire = head + chunks + b"0\r\n\r\n"
    return [wire[i : i + segment] for i in range(0, len(wire), segment)]


async def _serve_in_segments(segments: list[bytes]) -> Any:
    async def respond(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for piece in segments:
            writer.write(piece)
            await writer.drain()  # one small segment at a time

    return raw_server(respond)


async def test_a_large_chunked_gzip_answer_in_small_segments_arrives_whole() -> None:
    """Chunked and gzip-encoded, 600 KiB once inflated, sent in 1,400-byte writes (a
    segment each on loopback): the many short reads and the long inflated body decode."""
    body = profile_body(padding="".join(f"{i:08x}" for i in range(600 * 1024 // 8)))
    async with (
        await _serve_in_segments(_chunked_gzip(body, 1400)) as server,
        AccountClient(KEY, base_url=server.url) as client,
    ):
        profile = await client.account.profile()
        again = await client.account.profile()  # the same pooled connection, read again
    assert profile.balance_eur == again.balance_eur == Decimal(default_profile()["balance_eur"])
    assert server.requests == 2


def test_on_uvloop_the_read_size_is_left_alone_and_large_answers_arrive() -> None:
    """uvloop's transports read into buffers of their own: the hook must not touch them
    (they have no max_size to set), and a 600 KiB chunked gzip answer arrives whole."""
    import uvloop

    body = profile_body(padding="y" * (600 * 1024))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, uvloop.Loop)
        async with raw_server(_silent) as server:
            made: tuple[Any, Any] = await loop.create_connection(
                functools.partial(_Protocol, loop), "127.0.0.1", server.port
            )
            transport = made[0]
            transport.close()
            assert not hasattr(transport, "max_size")
        async with (
            await _serve_in_segments(_chunked_gzip(body, 1400)) as server,
            AccountClient(KEY, base_url=server.url) as client,
        ):
            async with asyncio.timeout(30):
                profile = await client.account.profile()
        assert profile.balance_eur == Decimal(default_profile()["balance_eur"])

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
