"""Pool isolation: an answer reaches only the request (and so the key) it answers.

A server or proxy that sends bytes on an idle keep-alive connection must not make the next
request on that connection, which may carry another key, read them as its answer.
"""

from __future__ import annotations

import asyncio

import pytest
from rawserver import RawServer, profile_body, raw_server, response, serve

from accountapi import AccountClient, APIConnectionError, Limits

KEY_A = "dpct_" + "a" * 32
KEY_B = "dpct_" + "b" * 32
BALANCES = {KEY_A.encode(): "1.000000", KEY_B.encode(): "2.000000"}


def _balance_for(head: bytes) -> str:
    for key, balance in BALANCES.items():
        if b"Bearer " + key in head:
            return balance
    raise AssertionError("request without a known key")


async def _loop_turns(turns: int = 3) -> None:
    """Let the loop poll its sockets a bounded number of times (no wall-clock wait).

    Loopback TCP puts written bytes in the peer's receive buffer before ``drain()``
    returns, so the next selector pass sees them and the one after runs their callback.
    """
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_bytes_sent_to_an_idle_connection_never_reach_another_key() -> None:
    """Key B never receives the stale answer a server pushed after key A's request."""
    push, stale_sent = asyncio.Event(), asyncio.Event()
    stale = response(200, profile_body(balance_eur="99.000000"))

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(response(200, profile_body(balance_eur=_balance_for(head))))
        await w.drain()
        if not stale_sent.is_set():
            # A second, unsolicited answer once the client holds the connection idle.
            await push.wait()
            w.write(stale)
            await w.drain()
            stale_sent.set()

    async with (
        raw_server(respond) as server,
        AccountClient(KEY_A, base_url=server.url, limits=Limits(max_connections=1)) as client,
    ):
        first = await client.account.profile()
        push.set()
        await stale_sent.wait()
        await _loop_turns()
        second = await client.account.profile(api_key=KEY_B)
        third = await client.account.profile()
    assert str(first.balance_eur) == "1.000000"
    assert str(second.balance_eur) == "2.000000"
    assert str(third.balance_eur) == "1.000000"
    # The poisoned connection was closed, not reused: B's request went on a new one.
    assert server.connections == 2
    assert server.requests == 3


async def test_an_extra_answer_glued_to_a_response_is_never_read_as_the_next() -> None:
    """Two answers in one write for one request: the second is dropped with its connection."""

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(
            response(200, profile_body(balance_eur=_balance_for(head)))
            + response(200, profile_body(balance_eur="99.000000"))
        )
        await w.drain()

    async with (
        raw_server(respond) as server,
        AccountClient(KEY_A, base_url=server.url, limits=Limits(max_connections=1)) as client,
    ):
        for _ in range(3):
            a = await client.account.profile()
            b = await client.account.profile(api_key=KEY_B)
            assert str(a.balance_eur) == "1.000000"
            assert str(b.balance_eur) == "2.000000"
    assert server.requests == 6


@pytest.mark.parametrize("junk", [b"HTTP/1.1 200 OK\r\n", b"\r\n", b"garbage"])
async def test_partial_or_junk_bytes_on_an_idle_connection_are_not_an_answer(junk: bytes) -> None:
    """A fragment pushed while idle fails nothing and answers nothing: the next call is served.

    Junk that cannot start an answer breaks the idle connection (aiohttp closes it); an
    incomplete head is dropped with the parser it sat in when the next request starts.
    """
    push, pushed = asyncio.Event(), asyncio.Event()

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(response(200, profile_body(balance_eur=_balance_for(head))))
        await w.drain()
        if not pushed.is_set():
            await push.wait()
            w.write(junk)
            await w.drain()
            pushed.set()

    async with (
        raw_server(respond) as server,
        AccountClient(KEY_A, base_url=server.url, limits=Limits(max_connections=1)) as client,
    ):
        await client.account.profile()
        push.set()
        await pushed.wait()
        await _loop_turns()
        try:
            second = await client.account.profile(api_key=KEY_B)
        except APIConnectionError:  # pragma: no cover - the failure this test exists for
            pytest.fail("junk on an idle connection failed the next request")
    assert str(second.balance_eur) == "2.000000"
    assert server.requests == 2


async def test_every_poisoned_connection_in_the_pool_is_passed_over() -> None:
    """Three idle connections all holding a stale answer: all are closed, a fresh one serves."""
    push, all_sent = asyncio.Event(), asyncio.Event()
    stale = response(200, profile_body(balance_eur="99.000000"))
    pushed = 0

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal pushed
        w.write(response(200, profile_body(balance_eur=_balance_for(head))))
        await w.drain()
        if server.requests <= 3:
            await push.wait()
            w.write(stale)
            await w.drain()
            pushed += 1
            if pushed == 3:
                all_sent.set()

    server = RawServer(respond)
    async with (
        serve(server),
        AccountClient(KEY_A, base_url=server.url, limits=Limits(max_connections=3)) as client,
    ):
        # Three calls at once open three connections, each then left idle in the pool.
        await asyncio.gather(*(client.account.profile() for _ in range(3)))
        assert server.connections == 3
        push.set()
        await all_sent.wait()
        await _loop_turns()
        answer = await client.account.profile(api_key=KEY_B)
    assert str(answer.balance_eur) == "2.000000"
    assert server.connections == 4
