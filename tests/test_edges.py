"""Promises at the edges: deadlines that count every wait, bounded bodies, capped cool-downs,
shutdown, request counting and the small cases a hostile server or an impatient caller finds."""

from __future__ import annotations

import asyncio
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from rawserver import RawServer, profile_body, raw_server, response, serve

from accountapi import (
    AccountAPIError,
    AccountClient,
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BadGatewayError,
    ClientStateError,
    InternalServerError,
    Limits,
    RateLimitError,
    RetryPolicy,
    Timeout,
)
from accountapi.gates import MAX_COOL_DOWN, MemoryKeyGate
from accountapi.testing import Emulator, Fault, VirtualClock

CAP = 1 << 20


# -- 1. Timeout.total covers the wait for a slot --------------------------------------


async def test_deadline_counts_the_wait_for_a_slot(emulator: Emulator) -> None:
    """An eleventh call queued behind ten slow ones ends at its total deadline, not later."""
    key = emulator.add_key(latency=0.6)
    async with AccountClient(key, base_url=emulator.url, max_retries=0) as client:
        holders = [asyncio.create_task(client.account.profile()) for _ in range(10)]
        await emulator.wait_for_attempts(key, 10)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APITimeoutError) as info:
            await client.account.profile(timeout=1.0)
        ended = loop.time() - started
        await asyncio.gather(*holders)
    # It got a slot at ~0.6 s and had ~0.4 s left for a 0.6 s answer: it must not run on
    # to 1.2 s (or 1.6 s, as when the deadline ignored the queue).
    assert ended < 1.0 + 0.2
    assert info.value.attempts == 1
    assert emulator.attempts(key) == 11


async def test_deadline_spent_in_the_queue_sends_nothing(emulator: Emulator) -> None:
    """A call whose whole deadline passes in the queue raises APITimeoutError with attempts == 0."""
    key = emulator.add_key(latency=0.5)
    async with AccountClient(key, base_url=emulator.url, max_retries=0) as client:
        holders = [asyncio.create_task(client.account.profile()) for _ in range(10)]
        await emulator.wait_for_attempts(key, 10)
        with pytest.raises(APITimeoutError) as info:
            await client.account.profile(timeout=0.1)
        await asyncio.gather(*holders)
    assert info.value.attempts == 0
    assert info.value.request_sent is False
    assert emulator.attempts(key) == 10


# -- 2. The size cap bounds decoded bytes ---------------------------------------------


def _bomb(n_bytes: int) -> bytes:
    return gzip.compress(b" " * n_bytes, compresslevel=9)


def _answer_once(status: int, body: bytes, headers: dict[str, str]) -> RawServer:
    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(response(status, body, headers))
        await w.drain()

    return RawServer(respond)


@pytest.fixture
async def gzip_server() -> AsyncIterator[RawServer]:
    """Answers every request with a 64 MiB gzip bomb (about 64 KiB on the wire)."""
    bomb = _bomb(64 << 20)

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        status = 502 if b"X-Bomb-Status: 502" in head else 200
        w.write(response(status, bomb, {"Content-Encoding": "gzip"}))
        await w.drain()

    async with raw_server(respond) as server:
        yield server


async def test_the_sdk_asks_for_an_unencoded_body(gzip_server: RawServer) -> None:
    """Every request says Accept-Encoding: identity."""
    async with AccountClient("dpct_" + "a" * 32, base_url=gzip_server.url) as client:
        with pytest.raises(APIResponseValidationError):
            await client.account.profile()
    assert b"accept-encoding: identity" in gzip_server.heads[0].lower()


async def test_a_gzip_bomb_costs_about_the_cap_in_memory(gzip_server: RawServer) -> None:
    """A 64 MiB gzip body is inflated only up to max_response_bytes, then refused as too large."""
    async with AccountClient(
        "dpct_" + "a" * 32, base_url=gzip_server.url, limits=Limits(max_response_bytes=CAP)
    ) as client:
        await client.account.dismiss_notifications()  # warm up: imports, pool, buffers
        tracemalloc.start()
        try:
            with pytest.raises(APIResponseValidationError, match="max_response_bytes"):
                await client.account.profile()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 6 * CAP


async def test_a_gzip_bomb_in_a_502_is_bounded_on_every_retry(gzip_server: RawServer) -> None:
    """A retried 502 carrying a bomb is refused at the cap each time and keeps its class."""
    clock = VirtualClock()
    async with aiohttp.ClientSession(headers={"X-Bomb-Status": "502"}) as session:
        client = AccountClient(
            "dpct_" + "a" * 32,
            base_url=gzip_server.url,
            session=session,
            clock=clock,
            max_retries=2,
            limits=Limits(max_response_bytes=CAP),
        )
        tracemalloc.start()
        try:
            with pytest.raises(BadGatewayError, match="max_response_bytes") as info:
                await client.account.profile()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.attempts == 3 == gzip_server.requests
    assert peak < 6 * CAP


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, no zlib wrapper
    ],
)
async def test_a_small_encoded_body_is_still_decoded(
    encoding: str, compress: object, recwarn: pytest.WarningsRecorder
) -> None:
    """A server that compresses though not asked to still gets its profile decoded."""
    body = profile_body(balance_eur="3.140000")
    packed = compress(body)  # type: ignore[operator]
    async with (
        raw_server(_answer_once(200, packed, {"Content-Encoding": encoding}).respond) as server,
        AccountClient("dpct_" + "a" * 32, base_url=server.url) as client,
    ):
        profile = await client.account.profile()
    assert str(profile.balance_eur) == "3.140000"


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
async def test_an_encoding_not_asked_for_is_refused(encoding: str) -> None:
    """A body in a coding the SDK cannot bound is an APIResponseValidationError, not a crash."""
    async with (
        raw_server(_answer_once(200, b"\x00garbage", {"Content-Encoding": encoding}).respond) as s,
        AccountClient("dpct_" + "a" * 32, base_url=s.url) as client,
    ):
        with pytest.raises(APIResponseValidationError, match="unreadable response body"):
            await client.account.profile()


async def test_an_oversized_error_body_is_reported_as_too_large() -> None:
    """A 500 whose body is over the cap says so, instead of "empty response body"."""
    big = b"x" * (2 * CAP)
    async with (
        raw_server(_answer_once(500, big, {}).respond) as server,
        AccountClient(
            "dpct_" + "a" * 32, base_url=server.url, limits=Limits(max_response_bytes=CAP)
        ) as client,
    ):
        with pytest.raises(InternalServerError) as info:
            await client.account.profile()
    assert "max_response_bytes" in str(info.value)
    assert "empty" not in str(info.value)


# -- 3. A long Retry-After cannot park a key ------------------------------------------


@pytest.mark.parametrize("timeout", [None, 60.0])
async def test_a_day_long_retry_after_fails_later_calls_at_once(
    emulator: Emulator, key: str, clock: VirtualClock, timeout: float | None
) -> None:
    """After Retry-After: 86400, calls on the key raise RateLimitError at once, nothing sent."""
    emulator.script(key, [Fault.rate_limited(86400)])
    async with AccountClient(key, base_url=emulator.url, clock=clock, timeout=timeout) as client:
        with pytest.raises(RateLimitError) as first:
            await client.account.profile()
        assert first.value.retry_after == 86400
        assert first.value.attempts == 1
        with pytest.raises(RateLimitError) as second:
            await client.account.profile()
    assert second.value.attempts == 0
    assert second.value.retry_after is not None
    assert 0 < second.value.retry_after <= MAX_COOL_DOWN
    assert emulator.attempts(key) == 1
    assert clock.sleeps == []  # nothing waited: neither the retry nor the gate


async def test_the_cool_down_is_capped(emulator: Emulator, key: str, clock: VirtualClock) -> None:
    """Once MAX_COOL_DOWN has passed the key is tried again, whatever the Retry-After said."""
    emulator.script(key, [Fault.rate_limited(86400)])
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        with pytest.raises(RateLimitError):
            await client.account.profile()
        clock.offset += MAX_COOL_DOWN
        profile = await client.account.profile()
    assert profile.email
    assert emulator.attempts(key) == 2


async def test_a_cool_down_longer_than_the_deadline_fails_at_once(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """A 20 s cool-down (within max_wait) and a 5 s deadline: RateLimitError now, retry_after ~20."""
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        await client.key_gate.cool_down(key, 20.0)
        with pytest.raises(RateLimitError) as info:
            await client.account.profile(timeout=5.0)
        # With the time to wait it out, the same call waits and succeeds.
        assert (await client.account.profile(timeout=30.0)).email
    assert info.value.retry_after == pytest.approx(20.0, abs=0.5)
    assert info.value.attempts == 0
    assert emulator.attempts(key) == 1
    assert clock.sleeps
    assert clock.sleeps[0] == pytest.approx(20.0, abs=0.5)


async def test_queued_calls_fail_fast_when_a_long_cool_down_starts(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """Calls queued behind a 429 asking for an hour raise RateLimitError; none is sent after it."""
    key = emulator.add_key(latency=0.2)
    emulator.script(key, [Fault.rate_limited(3600)])
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        results = await asyncio.gather(
            *(client.account.profile() for _ in range(15)), return_exceptions=True
        )
    limited = [r for r in results if isinstance(r, RateLimitError)]
    assert len(limited) >= 6  # the first wave had 10 in flight; the 5 queued all fail fast
    assert all(isinstance(r, RateLimitError) or not isinstance(r, Exception) for r in results)
    assert emulator.attempts(key) <= 10


async def test_the_memory_gate_forgets_a_key_once_its_cool_down_ends() -> None:
    """A million-key run with 429s stays flat: cooled-down keys nobody calls again are dropped."""
    clock = VirtualClock()
    gate = MemoryKeyGate(10, clock=clock)
    for n in range(1000):
        await gate.cool_down(f"key-{n}", 2.0)
    assert len(gate) == 1000
    clock.offset += 3.0
    await gate.cool_down("late", 2.0)
    assert len(gate) == 1
    assert len(gate._cooling) == 1


async def test_a_cool_down_is_capped_in_the_gate_itself() -> None:
    """MemoryKeyGate.cool_down(key, 86400) holds the key back for MAX_COOL_DOWN at most."""
    clock = VirtualClock()
    gate = MemoryKeyGate(10, clock=clock)
    await gate.cool_down("k", 86400.0)
    await gate.acquire("k", None)
    assert clock.slept == pytest.approx(MAX_COOL_DOWN, abs=0.01)
    gate.release("k")


# -- 4. Closing with calls queued or waiting --------------------------------------------


async def test_aclose_fails_queued_calls_with_client_state_error(emulator: Emulator) -> None:
    """Calls still queued for a slot when the client closes raise ClientStateError, not RuntimeError."""
    key = emulator.add_key(latency=0.3)
    client = AccountClient(key, base_url=emulator.url, max_retries=0)
    calls = [asyncio.create_task(client.account.profile()) for _ in range(15)]
    await emulator.wait_for_attempts(key, 10)
    await client.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ClientStateError | APIConnectionError) for r in results), results
    assert sum(isinstance(r, ClientStateError) for r in results) >= 5
    assert emulator.attempts(key) == 10


class _HeldSleep(VirtualClock):
    """A virtual clock whose sleeps wait until the test lets them go."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = asyncio.Event()
        self.wake = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await self.wake.wait()
        await super().sleep(seconds)


async def test_aclose_fails_a_call_waiting_to_retry(emulator: Emulator, key: str) -> None:
    """A call in its retry backoff when the client closes raises ClientStateError."""
    emulator.script(key, [Fault.status(503)])
    clock = _HeldSleep()
    client = AccountClient(key, base_url=emulator.url, clock=clock)
    call = asyncio.create_task(client.account.profile())
    async with asyncio.timeout(5):
        await clock.sleeping.wait()
    await client.aclose()
    clock.wake.set()
    with pytest.raises(ClientStateError) as info:
        await call
    assert info.value.attempts == 1
    assert emulator.attempts(key) == 1


async def test_a_closed_session_of_yours_is_a_client_state_error(
    emulator: Emulator, key: str
) -> None:
    """An aiohttp session passed in and already closed gives ClientStateError, not RuntimeError."""
    session = aiohttp.ClientSession()
    await session.close()
    client = AccountClient(key, base_url=emulator.url, session=session)
    with pytest.raises(ClientStateError):
        await client.account.profile()
    assert emulator.attempts(key) == 0


async def test_a_session_closed_under_a_queued_call(emulator: Emulator) -> None:
    """Your session closed while calls wait for a slot: they raise SDK errors only."""
    key = emulator.add_key(latency=0.3)
    async with aiohttp.ClientSession() as session:
        client = AccountClient(key, base_url=emulator.url, session=session, max_retries=0)
        calls = [asyncio.create_task(client.account.profile()) for _ in range(12)]
        await emulator.wait_for_attempts(key, 10)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ClientStateError | APIConnectionError) for r in results), results


# -- 7. Smaller promises ----------------------------------------------------------------


async def test_attempts_count_requests_sent(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """Exhausted retries report exactly the requests the server saw."""
    emulator.script(key, [Fault.status(503)] * 3)
    async with AccountClient(key, base_url=emulator.url, clock=clock, max_retries=2) as client:
        with pytest.raises(AccountAPIError) as info:
            await client.account.profile()
    assert info.value.attempts == emulator.attempts(key) == 3


async def test_a_str_subclass_key_is_accepted(emulator: Emulator, key: str) -> None:
    """A key given as a str subclass (a settings library's secret type) works like the str."""

    class Secret(str):
        __slots__ = ()

        def __repr__(self) -> str:
            return "Secret('***')"

    async with AccountClient(Secret(key), base_url=emulator.url) as client:
        assert (await client.account.profile()).email
        assert (await client.account.profile(api_key=Secret(key))).email
    assert emulator.attempts(key) == 2


async def test_a_custom_subclass_of_the_memory_gate_is_always_asked(emulator: Emulator) -> None:
    """A MemoryKeyGate subclass that overrides acquire sees every call (no fast path around it)."""

    class Counting(MemoryKeyGate):
        __slots__ = ("calls",)

        def __init__(self) -> None:
            super().__init__(10)
            self.calls = 0

        async def acquire(
            self, key: str, timeout: float | None, *, max_cool_down: float | None = None
        ) -> None:
            self.calls += 1
            await super().acquire(key, timeout, max_cool_down=max_cool_down)

    gate = Counting()
    key = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, key_gate=gate) as client:
        for _ in range(3):
            await client.account.profile()
    assert gate.calls == 3
    assert len(gate) == 0


def test_per_key_with_a_gate_of_your_own_is_an_error() -> None:
    """Limits(per_key=5) cannot apply to a key_gate you pass: a ConfigurationError says so."""
    from accountapi import ConfigurationError

    with pytest.raises(ConfigurationError, match="per_key"):
        AccountClient("dpct_" + "a" * 32, key_gate=MemoryKeyGate(10), limits=Limits(per_key=5))
    # Matching values, or the default, are fine.
    AccountClient("dpct_" + "a" * 32, key_gate=MemoryKeyGate(5), limits=Limits(per_key=5))
    AccountClient("dpct_" + "a" * 32, key_gate=MemoryKeyGate(3))


async def test_a_gate_timeout_is_not_counted_as_an_attempt(emulator: Emulator) -> None:
    """RetryPolicy and Timeout aside, a call that never left the gate reports attempts == 0."""
    key = emulator.add_key(latency=0.4)
    async with AccountClient(
        key, base_url=emulator.url, max_retries=0, timeout=Timeout(total=5)
    ) as client:
        holders = [asyncio.create_task(client.account.profile()) for _ in range(10)]
        await emulator.wait_for_attempts(key, 10)
        with pytest.raises(APITimeoutError) as info:
            await client.account.profile(timeout=0.05)
        await asyncio.gather(*holders)
    assert info.value.attempts == 0


async def test_the_longest_of_repeated_retry_after_headers_is_waited() -> None:
    """Two Retry-After headers (1 then 3): the retry waits 3 s, never the first, shorter one."""
    answers = [
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n"
        b"Retry-After: 1\r\nRetry-After: 3\r\n\r\n",
        response(200, profile_body()),
    ]

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answers.pop(0))
        await w.drain()

    clock = VirtualClock()
    async with (
        raw_server(respond) as server,
        AccountClient("dpct_" + "a" * 32, base_url=server.url, clock=clock) as client,
    ):
        await client.account.profile()
    assert server.requests == 2
    assert clock.slept >= 3.0


@pytest.mark.parametrize(
    "url",
    [
        "https://api\\.depicta.ai",
        "https://api .depicta.ai",
        "https://api.depicta.ai:99999",
        "https://[::1",
        "https://a%00b.example",
    ],
)
def test_an_unusable_base_url_is_a_configuration_error(url: str) -> None:
    """What yarl or a resolver would refuse on the first request is refused when the client is made."""
    from accountapi import ConfigurationError

    with pytest.raises(ConfigurationError, match="base_url"):
        AccountClient("dpct_" + "a" * 32, base_url=url)


def test_a_base_url_with_credentials_is_never_echoed() -> None:
    """An invalid URL holding a password is refused without repeating it."""
    from accountapi import ConfigurationError

    with pytest.raises(ConfigurationError) as info:
        AccountClient("dpct_" + "a" * 32, base_url="https://user:hunter2@api\\.depicta.ai")
    assert "hunter2" not in str(info.value)


async def test_a_status_error_from_a_real_response_pickles() -> None:
    """An APIStatusError holding aiohttp's headers crosses a process pool: headers kept, no key."""
    import pickle

    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n"
        b"Retry-After: 70\r\nX-Request-Id: req_1\r\n\r\n"
    )

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer)
        await w.drain()

    key = "dpct_" + "p" * 32
    async with (
        raw_server(respond) as server,
        AccountClient(key, base_url=server.url, max_retries=0) as client,
    ):
        with pytest.raises(RateLimitError) as info:
            await client.account.profile()
    data = pickle.dumps(info.value)
    assert key.encode() not in data
    copy = pickle.loads(data)  # noqa: S301 - our own bytes
    assert type(copy) is RateLimitError
    assert (copy.status, copy.retry_after, copy.request_id) == (429, 70.0, "req_1")
    assert copy.headers["retry-after"] == "70"
    assert copy.key_hint == info.value.key_hint
    assert str(copy) == str(info.value)


# -- A malformed key is refused before sending: a configuration error, not a 401 ------------


@pytest.mark.parametrize("bad", ["", "dpct_ with space", "dpct_\u00e9t\u00e9", "dpct_x\r\nX: y"])
async def test_a_malformed_key_is_a_configuration_error_not_a_status_error(
    emulator: Emulator, key: str, bad: str
) -> None:
    """A malformed key raises MalformedAPIKeyError, a ConfigurationError with code
    key_malformed and nothing sent; no APIStatusError (the service never answered), so no
    `except AuthenticationError` catches it (the README's web examples name both)."""
    from accountapi import (
        APIStatusError,
        AuthenticationError,
        ConfigurationError,
        MalformedAPIKeyError,
    )

    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(ConfigurationError) as info:
            await client.account.profile(api_key=bad)
    error = info.value
    assert isinstance(error, MalformedAPIKeyError)
    assert not isinstance(error, AuthenticationError | APIStatusError)
    assert (error.code, error.attempts) == ("key_malformed", 0)
    assert emulator.attempts(key) == 0
    if bad:
        assert bad not in str(error)
        assert bad not in repr(error)


async def test_a_malformed_key_counts_as_an_auth_failure_in_a_summary(
    emulator: Emulator, key: str
) -> None:
    """balances() reports a malformed key as one failed result, counted with the auth failures."""
    from accountapi import BalanceSummary

    async with AccountClient(key, base_url=emulator.url) as client:
        summary = await BalanceSummary.collect(client.balances([key, "not a key", ""]))
    assert (summary.total, summary.ok, summary.failed, summary.auth_failed) == (3, 1, 2, 2)


# -- A read that never got a byte of answer is retried ------------------------------------


def _fail_first(first: bytes | None, *, reset: bool = False) -> RawServer:
    """A server whose first request gets ``first`` (None: nothing) and then its connection
    closed (or reset); later requests get a profile."""
    import socket
    import struct

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if server.requests == 1:
            if first:
                w.write(first)
                await w.drain()
            if reset:
                sock = w.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.close()
            return
        w.write(response(200, profile_body(balance_eur="5.000000")))
        await w.drain()

    server = RawServer(respond)
    return server


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_a_get_with_no_byte_of_answer_is_retried(reset: bool) -> None:
    """Closed or reset before the first byte: the GET is sent again, and both are counted."""
    clock = VirtualClock()
    server = _fail_first(None, reset=reset)
    async with (
        serve(server) as s,
        AccountClient("dpct_" + "a" * 32, base_url=s.url, clock=clock) as client,
    ):
        profile = await client.account.profile()
    assert str(profile.balance_eur) == "5.000000"
    assert server.requests == 2
    assert len(clock.sleeps) == 1  # one backoff wait, under the policy


@pytest.mark.parametrize(
    "first",
    [
        b"H",
        b"HTTP/1.1 2",
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"user": ',
    ],
    ids=["one-byte", "partial-status-line", "partial-headers", "mid-body"],
)
@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_an_answer_broken_off_after_its_first_byte_is_not_retried(
    first: bytes, reset: bool
) -> None:
    """Once any byte of the answer arrived, a broken answer is final: APIConnectionError, one request."""
    clock = VirtualClock()
    server = _fail_first(first, reset=reset)
    async with (
        serve(server) as s,
        AccountClient("dpct_" + "a" * 32, base_url=s.url, clock=clock) as client,
    ):
        with pytest.raises(APIConnectionError) as info:
            await client.account.profile()
    assert info.value.request_sent is True
    assert info.value.retryable is False
    assert info.value.attempts == 1 == server.requests
    assert clock.sleeps == []


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_a_dismiss_with_no_answer_is_not_sent_again(reset: bool) -> None:
    """POST dismiss is not resent on a dropped connection (documented): one request, raised."""
    clock = VirtualClock()
    server = _fail_first(None, reset=reset)
    async with (
        serve(server) as s,
        AccountClient("dpct_" + "a" * 32, base_url=s.url, clock=clock) as client,
    ):
        with pytest.raises(APIConnectionError) as info:
            await client.account.dismiss_notifications()
    assert info.value.request_sent is True
    assert info.value.attempts == 1 == server.requests


async def test_a_pooled_connection_closed_under_a_get_is_retried_and_counted() -> None:
    """The keep-alive race: the server drops a pooled connection as the GET arrives on it."""

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if server.requests == 2:  # the second request, on the reused connection
            w.close()
            return
        w.write(response(200, profile_body()))
        await w.drain()

    server = RawServer(respond)
    clock = VirtualClock()
    async with (
        serve(server) as s,
        AccountClient(
            "dpct_" + "a" * 32, base_url=s.url, clock=clock, limits=Limits(max_connections=1)
        ) as client,
    ):
        await client.account.profile()
        await client.account.profile()
    assert server.requests == 3
    assert server.connections == 2
    assert len(clock.sleeps) == 1


async def test_the_retry_of_an_unanswered_get_stays_within_the_deadline() -> None:
    """Every unanswered attempt and backoff comes out of one total: it ends at the deadline."""

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = RawServer(respond)
    async with (
        serve(server) as s,
        AccountClient(
            "dpct_" + "a" * 32,
            base_url=s.url,
            retry=RetryPolicy(backoff_initial=0.01, backoff_max=0.02),
            max_retries=1000,
        ) as client,
    ):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APIConnectionError) as info:
            await client.account.profile(timeout=0.3)
        elapsed = loop.time() - started
    assert elapsed < 0.3 + 0.1
    assert server.requests > 1
    # Attempts count requests the service may have seen: the last one can be cut by the
    # deadline before its bytes reach the server, and is counted all the same.
    assert server.requests <= info.value.attempts <= server.requests + 1


async def test_the_dedupe_window_is_bounded_by_bytes_not_only_by_count() -> None:
    """100 distinct keys with 512 KiB answers under the default window of 10,000: the window
    keeps at most about 16 MiB of bodies, not all 50 MiB."""
    big = response(200, profile_body(padding="x" * (512 << 10)))

    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(big)
        await w.drain()

    keys = [f"dpct_{i:032d}" for i in range(100)]
    async with (
        raw_server(respond) as server,
        AccountClient(base_url=server.url, limits=Limits(max_response_bytes=1 << 20)) as client,
    ):
        tracemalloc.start()
        try:
            ok = 0
            async for result in client.balances(keys, concurrency=4):
                ok += result.ok
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert ok == 100
    assert server.requests == 100
    assert peak < 30 << 20, f"peak {peak >> 20} MiB"
