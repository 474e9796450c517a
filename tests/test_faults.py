"""Faults only a real server can produce: each gives a documented error or a documented
recovery, never a partial balance, and always gives its connection back.

"Gives its connection back" is proven functionally: the client has a pool of ONE
connection, so a leaked connection would make the follow-up call hang until its timeout.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from accountapi import (
    AccountAPIError,
    AccountClient,
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    Limits,
    Timeout,
)
from accountapi.testing import Emulator, Fault, VirtualClock

ONE_CONNECTION = Limits(max_connections=1, max_response_bytes=1 << 20)


@pytest.fixture
async def tight(emulator: Emulator, key: str, clock: VirtualClock) -> AsyncIterator[AccountClient]:
    """A client with a one-connection pool and short timeouts."""
    async with AccountClient(
        key,
        base_url=emulator.url,
        clock=clock,
        limits=ONE_CONNECTION,
        timeout=Timeout(connect=1, read=0.3, attempt=2, total=5),
    ) as client:
        yield client


async def assert_pool_free(client: AccountClient, emulator: Emulator, key: str) -> None:
    """The single pooled connection is free again: a normal call goes through."""
    profile = await client.account.profile()
    assert profile.balance_eur == Decimal(emulator.profile(key)["balance_eur"])


FAULTS = [
    pytest.param([Fault.reset_mid_body()], APIConnectionError, id="reset-mid-body"),
    pytest.param([Fault.truncated()], APIConnectionError, id="short-content-length"),
    pytest.param([Fault.stall_body(2)], APITimeoutError, id="body-stalls-past-read-timeout"),
    pytest.param([Fault.large_body(3 << 20)], APIResponseValidationError, id="body-over-cap"),
    pytest.param(
        [Fault.large_body(3 << 20, chunked=True)],
        APIResponseValidationError,
        id="chunked-body-over-cap",
    ),
    pytest.param(
        [Fault.body(b'{"user": {"balance_eur": "9.99"')],
        APIResponseValidationError,
        id="truncated-json",
    ),
]


@pytest.mark.parametrize(("faults", "expected"), FAULTS)
async def test_socket_fault_raises_its_class_and_frees_the_connection(
    emulator: Emulator,
    key: str,
    tight: AccountClient,
    faults: list[Fault],
    expected: type[AccountAPIError],
) -> None:
    """The fault surfaces as its documented class (no partial profile) and the pool recovers."""
    emulator.script(key, faults)
    with pytest.raises(expected) as info:
        await tight.account.profile()
    assert info.value.attempts == 1
    await assert_pool_free(tight, emulator, key)


async def test_large_body_under_the_cap_is_decoded(
    emulator: Emulator, key: str, tight: AccountClient
) -> None:
    """A multi-megabyte body within the cap is read and decoded correctly."""
    async with AccountClient(
        key, base_url=emulator.url, limits=Limits(max_response_bytes=8 << 20)
    ) as client:
        emulator.script(key, [Fault.large_body(3 << 20), Fault.large_body(3 << 20, chunked=True)])
        for _ in range(2):
            assert (await client.account.profile()).email == emulator.profile(key)["email"]


async def test_idle_connection_closed_by_server_is_recovered(
    emulator: Emulator, key: str, tight: AccountClient
) -> None:
    """Keep-alive race: the pooled connection is dropped by the server when reused; the GET recovers."""
    await tight.account.profile()  # leaves one idle keep-alive connection in the pool
    emulator.script(key, [Fault.drop()])  # the server closes it as the next request arrives
    profile = await tight.account.profile()
    assert profile.email == emulator.profile(key)["email"]
    assert emulator.attempts(key) == 3
    await assert_pool_free(tight, emulator, key)


class FailingResolver(AbstractResolver):
    """A resolver for which no name exists: aiohttp's own extension point, not a patch."""

    def __init__(self) -> None:
        self.lookups = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups += 1
        raise OSError(f"cannot resolve {host}")

    async def close(self) -> None:
        return None


async def test_dns_failure_is_retried_then_raised(clock: VirtualClock) -> None:
    """A name that does not resolve never reached the service: retried, then APIConnectionError."""
    resolver = FailingResolver()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=resolver))
    async with (
        session,
        AccountClient(
            "dpct_" + "n" * 32,
            base_url="https://account.invalid",
            session=session,
            clock=clock,
            max_retries=2,
        ) as client,
    ):
        with pytest.raises(APIConnectionError) as info:
            await client.account.profile()
    assert info.value.request_sent is False
    assert info.value.attempts == 3
    assert resolver.lookups == 3
    assert len(clock.sleeps) == 2


async def test_cancel_during_backoff_stops_at_once(emulator: Emulator, key: str) -> None:
    """Cancelling a call asleep in a Retry-After wait ends it promptly, sends nothing more,
    and holds no slot or connection."""
    emulator.script(key, [Fault.rate_limited(30)])
    waiting = asyncio.Event()
    async with AccountClient(
        key,
        base_url=emulator.url,
        limits=ONE_CONNECTION,
        timeout=60,
        on_retry=lambda event: waiting.set(),  # called just before the wait starts
    ) as client:
        task = asyncio.create_task(client.account.profile())
        async with asyncio.timeout(5):
            await waiting.wait()
        loop = asyncio.get_running_loop()
        cancelled_at = loop.time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stopped_in = loop.time() - cancelled_at
        assert stopped_in < 0.5
        assert emulator.attempts(key) == 1
        assert await client.key_gate.in_flight(key) == 0
        # The key is cooling down for 30 s now; another key proves the one connection is free.
        other = emulator.add_key()
        await client.account.profile(api_key=other)


async def test_cancel_mid_request_frees_slot_and_connection(emulator: Emulator, key: str) -> None:
    """Cancelling a call while the server is still answering leaves no slot or connection held."""
    emulator.script(key, [Fault.delay(10)])
    async with AccountClient(key, base_url=emulator.url, limits=ONE_CONNECTION) as client:
        task = asyncio.create_task(client.account.profile())
        await emulator.wait_for_attempts(key, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await client.key_gate.in_flight(key) == 0
        await assert_pool_free(client, emulator, key)
