"""Retries: only 429/502/503 and failed connects, waits that honour Retry-After, a deadline.

Attempts are counted at the emulator; waits are read from a VirtualClock, except where a
test measures a real Retry-After at the server.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest

from accountapi import (
    AccountClient,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadGatewayError,
    RateLimitError,
    RetryEvent,
    RetryPolicy,
    ServiceUnavailableError,
    Timeout,
)
from accountapi._retry import Retrier, backoff_wait
from accountapi.testing import Emulator, Fault, VirtualClock

TRANSIENT = [
    Fault.rate_limited(1),
    Fault.status(502),
    Fault.html(502),
    Fault.status(503),
    Fault.empty(503),
]


@pytest.mark.parametrize("fault", TRANSIENT, ids=lambda f: f"{f.name}-{f.code}")
async def test_transient_failures_are_retried(
    emulator: Emulator, key: str, client: AccountClient, clock: VirtualClock, fault: Fault
) -> None:
    """429, 502 (JSON or HTML) and 503 (JSON or empty) are retried until success."""
    emulator.script(key, [fault, fault])
    profile = await client.account.profile()
    assert profile.balance_eur is not None
    assert emulator.attempts(key) == 3
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 413, 422, 451, 500])
async def test_final_statuses_are_not_retried(
    emulator: Emulator, key: str, client: AccountClient, clock: VirtualClock, status: int
) -> None:
    """Every other status, 500 included, is raised after exactly one attempt."""
    emulator.script(key, [Fault.status(status)])
    with pytest.raises(APIStatusError) as info:
        await client.account.profile()
    assert info.value.status == status
    assert info.value.attempts == 1
    assert emulator.attempts(key) == 1
    assert clock.sleeps == []


async def test_exhausted_retries_raise_the_last_real_error(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """When retries run out the caller gets the last ServiceUnavailableError, with attempts."""
    key = emulator.add_key(fault=Fault.status(503))
    async with AccountClient(key, base_url=emulator.url, clock=clock, max_retries=3) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.account.profile()
    assert info.value.attempts == 4
    assert emulator.attempts(key) == 4
    assert len(clock.sleeps) == 3
    assert info.value.request_id == emulator.records[-1].request_id


async def test_max_retries_zero_disables_retrying(emulator: Emulator, clock: VirtualClock) -> None:
    """max_retries=0 makes one attempt only."""
    key = emulator.add_key(fault=Fault.status(502))
    async with AccountClient(key, base_url=emulator.url, clock=clock, max_retries=0) as client:
        with pytest.raises(BadGatewayError):
            await client.account.profile()
    assert emulator.attempts(key) == 1
    assert clock.sleeps == []


async def test_retry_after_seconds_honoured_at_the_server(emulator: Emulator, key: str) -> None:
    """With Retry-After: 1 the retry reaches the server no sooner than one second later."""
    emulator.script(key, [Fault.rate_limited(1)])
    async with AccountClient(key, base_url=emulator.url) as client:
        await client.account.profile()
    first, second = (r for r in emulator.records if r.path == "/v1/account/profile")
    assert first.status == 429
    assert second.status == 200
    assert second.t_start - first.t_start >= 1.0


async def test_retry_after_http_date_honoured_at_the_server(emulator: Emulator, key: str) -> None:
    """With an HTTP-date Retry-After the retry arrives at or after that date (server's clock)."""
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    emulator.script(key, [Fault.rate_limited(when)])
    async with AccountClient(key, base_url=emulator.url) as client:
        await client.account.profile()
    wall_minus_mono = time.time() - time.monotonic()
    second = emulator.records[-1]
    assert second.status == 200
    assert second.t_start + wall_minus_mono >= when.timestamp()


async def test_retry_after_ms_is_honoured(
    emulator: Emulator, key: str, client: AccountClient, clock: VirtualClock
) -> None:
    """retry-after-ms asks for a sub-second wait, and the SDK waits exactly that (never less)."""
    emulator.script(key, [Fault.rate_limited_ms(250)])
    await client.account.profile()
    assert len(clock.sleeps) == 1
    assert 0.25 <= clock.sleeps[0] <= 0.26


async def test_retry_after_beyond_the_deadline_raises_at_once(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """A Retry-After longer than the time left raises RateLimitError now, with retry_after set."""
    emulator.script(key, [Fault.rate_limited(30)])
    async with AccountClient(key, base_url=emulator.url, clock=clock, timeout=10) as client:
        with pytest.raises(RateLimitError) as info:
            await client.account.profile()
    assert info.value.retry_after == 30
    assert info.value.attempts == 1
    assert clock.sleeps == []
    assert emulator.attempts(key) == 1


async def test_retry_after_beyond_max_wait_raises_at_once(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """A Retry-After over RetryPolicy.max_wait is not slept; the 429 is raised."""
    emulator.script(key, [Fault.rate_limited(20)])
    policy = RetryPolicy(max_wait=5)
    async with AccountClient(key, base_url=emulator.url, clock=clock, retry=policy) as client:
        with pytest.raises(RateLimitError) as info:
            await client.account.profile()
    assert info.value.retry_after == 20
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "raw", ["", "inf", "nan", "-10", "9" * 40, "Fri, 01 Jan 100000 00:00:00 GMT"]
)
async def test_malformed_retry_after_falls_back_to_backoff(
    emulator: Emulator, key: str, client: AccountClient, clock: VirtualClock, raw: str
) -> None:
    """A malformed Retry-After still retries, on backoff, without an exception of its own."""
    emulator.script(key, [Fault.rate_limited(raw)])
    await client.account.profile()
    assert emulator.attempts(key) == 2
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= RetryPolicy().backoff_initial


def test_backoff_is_exponential_full_jitter_and_capped() -> None:
    """Backoff ceilings double from backoff_initial up to backoff_max; jitter spans [0, ceiling]."""
    policy = RetryPolicy(backoff_initial=0.25, backoff_max=2.0)
    assert [backoff_wait(policy, n, lambda: 1.0) for n in range(1, 7)] == [
        0.25,
        0.5,
        1.0,
        2.0,
        2.0,
        2.0,
    ]
    assert backoff_wait(policy, 5, lambda: 0.0) == 0.0
    assert backoff_wait(policy, 2, lambda: 0.5) == 0.25


async def test_backoff_waits_stay_within_ceilings_over_the_wire(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """Each backoff wait taken over real 503s lies within its exponential ceiling."""
    key = emulator.add_key(fault=Fault.status(503))
    policy = RetryPolicy(backoff_initial=0.1, backoff_max=0.8)
    async with AccountClient(
        key, base_url=emulator.url, clock=clock, retry=policy, max_retries=6
    ) as client:
        with pytest.raises(ServiceUnavailableError):
            await client.account.profile()
    ceilings = [0.1, 0.2, 0.4, 0.8, 0.8, 0.8]
    assert len(clock.sleeps) == 6
    assert all(0 <= wait <= cap for wait, cap in zip(clock.sleeps, ceilings, strict=True))


async def test_deadline_bounds_the_whole_call(emulator: Emulator, clock: VirtualClock) -> None:
    """Retries stop before the next wait would cross Timeout.total; waits never exceed it."""
    key = emulator.add_key(fault=Fault.status(503))
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=0.5)
    async with AccountClient(
        key,
        base_url=emulator.url,
        clock=clock,
        retry=policy,
        max_retries=50,
        timeout=Timeout(total=2.0),
    ) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.account.profile()
    assert clock.slept <= 2.0
    assert info.value.attempts < 51
    assert emulator.attempts(key) == info.value.attempts


async def test_on_retry_hook_and_log_record(
    emulator: Emulator, key: str, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry calls the hook and logs status, attempt, wait, request id and key hint."""
    events: list[RetryEvent] = []
    emulator.script(key, [Fault.status(503), Fault.rate_limited(2)])
    caplog.set_level(logging.INFO, logger="accountapi")
    async with AccountClient(
        key, base_url=emulator.url, clock=clock, on_retry=events.append
    ) as client:
        await client.account.profile()
    assert [e.attempt for e in events] == [1, 2]
    assert [e.status for e in events] == [503, 429]
    assert events[1].wait == pytest.approx(2.0, abs=0.01)
    assert all(e.request_id and e.request_id.startswith("req_") for e in events)
    assert all(e.key_hint == f"dpct_…{key[-4:]}" for e in events)
    messages = [r.getMessage() for r in caplog.records if r.name == "accountapi"]
    assert len(messages) == 2
    assert "ServiceUnavailableError" in messages[0]
    assert str(events[0].request_id) in messages[0]
    assert key not in "".join(messages)


async def test_a_failing_on_retry_hook_does_not_break_the_call(
    emulator: Emulator, key: str, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the user's on_retry hook is logged; the retry still happens."""

    def broken(event: RetryEvent) -> None:
        raise ValueError("metrics backend down")

    emulator.script(key, [Fault.status(503)])
    async with AccountClient(key, base_url=emulator.url, clock=clock, on_retry=broken) as client:
        profile = await client.account.profile()
    assert profile.email
    assert emulator.attempts(key) == 2
    assert any("on_retry hook raised" in r.getMessage() for r in caplog.records)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connection_refused_is_retried_then_raised(clock: VirtualClock) -> None:
    """A refused connection never reached the service, so it is retried, then raised as such."""
    url = f"http://127.0.0.1:{_closed_port()}"
    async with AccountClient(
        "dpct_" + "r" * 32, base_url=url, clock=clock, max_retries=2
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.account.profile()
    assert type(info.value) is APIConnectionError
    assert info.value.request_sent is False
    assert info.value.attempts == 3
    assert len(clock.sleeps) == 2


async def test_read_timeout_after_sending_is_not_retried(emulator: Emulator, key: str) -> None:
    """A body that stalls past the read timeout raises APITimeoutError after one attempt."""
    emulator.script(key, [Fault.stall_body(5)])
    async with AccountClient(key, base_url=emulator.url, timeout=Timeout(read=0.2)) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.account.profile()
    assert info.value.request_sent is True
    assert info.value.attempts == 1
    assert emulator.attempts(key) == 1


async def test_attempt_timeout_is_not_retried(emulator: Emulator, key: str) -> None:
    """A response slower than Timeout.attempt raises APITimeoutError, not retried."""
    emulator.script(key, [Fault.delay(5)])
    async with AccountClient(key, base_url=emulator.url, timeout=Timeout(attempt=0.2)) as client:
        with pytest.raises(APITimeoutError):
            await client.account.profile()
    assert emulator.attempts(key) == 1


async def test_attempt_timeout_covers_a_stalled_body(emulator: Emulator, key: str) -> None:
    """With no separate read timer, the attempt timeout still ends a body that stalls."""
    emulator.script(key, [Fault.stall_body(5)])
    async with AccountClient(
        key, base_url=emulator.url, timeout=Timeout(read=None, attempt=0.3)
    ) as client:
        with pytest.raises(APITimeoutError) as info:
            await client.account.profile()
    assert info.value.request_sent is True
    assert emulator.attempts(key) == 1


async def test_total_deadline_cuts_a_slow_attempt(emulator: Emulator, key: str) -> None:
    """A float timeout is the whole call's deadline and also caps the attempt in flight."""
    emulator.script(key, [Fault.delay(5)])
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(APITimeoutError):
            await client.account.profile(timeout=0.3)
    assert emulator.attempts(key) == 1


async def test_a_get_dropped_before_any_byte_is_retried_and_counted(
    emulator: Emulator, key: str, client: AccountClient, clock: VirtualClock
) -> None:
    """A GET whose connection closed before any byte of the answer is retried by the SDK,
    after a backoff wait, and the attempt is counted (aiohttp's silent resend is off)."""
    emulator.script(key, [Fault.drop()])
    profile = await client.account.profile()
    assert profile.email
    assert emulator.attempts(key) == 2
    assert len(clock.sleeps) == 1


async def test_unanswered_gets_give_up_after_the_policy(
    emulator: Emulator, key: str, client: AccountClient, clock: VirtualClock
) -> None:
    """More drops than retries: APIConnectionError(request_sent=True), every request counted."""
    emulator.script(key, [Fault.drop()] * 5)
    with pytest.raises(APIConnectionError) as info:
        await client.account.profile()
    assert info.value.request_sent is True
    assert info.value.retryable is True
    assert "before any byte" in str(info.value)
    assert info.value.attempts == 5 == emulator.attempts(key)
    assert len(clock.sleeps) == 4


async def test_dismiss_reset_is_not_retried(
    emulator: Emulator, key: str, client: AccountClient
) -> None:
    """A POST whose connection is reset is raised after one attempt: it may have been applied."""
    emulator.script(key, [Fault.drop()])
    with pytest.raises(APIConnectionError):
        await client.account.dismiss_notifications()
    assert emulator.attempts(key, "/v1/account/notifications/dismiss") == 1


@pytest.mark.parametrize(
    "fault", [Fault.truncated(), Fault.reset_mid_body()], ids=["truncated", "reset_mid_body"]
)
async def test_broken_bodies_raise_connection_errors(
    emulator: Emulator, key: str, client: AccountClient, fault: Fault
) -> None:
    """A body cut short never becomes a partial profile: it is an APIConnectionError."""
    emulator.script(key, [fault])
    with pytest.raises(APIConnectionError):
        await client.account.profile()


async def test_a_retry_after_wait_is_the_servers_plus_one_millisecond(
    emulator: Emulator,
) -> None:
    """Retry-After: 2 is slept as 2.001 s: never a hair early through rounding."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(2)])
    clock = VirtualClock()
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        await client.account.profile()
    assert clock.sleeps == [pytest.approx(2.001, abs=1e-9)]


async def test_a_backoff_wait_is_capped_at_max_wait() -> None:
    """A jittered backoff longer than max_wait is cut to max_wait and retried, not given up."""
    clock = VirtualClock()
    policy = RetryPolicy(backoff_initial=10, backoff_max=10, max_wait=0.5)
    retrier = Retrier(policy, max_retries=1, clock=clock, rand=lambda: 1.0)
    first = ServiceUnavailableError("gateway", status=503)
    attempts: list[int] = []

    async def attempt(number: int) -> str:
        attempts.append(number)
        return "answered"

    assert await retrier.retry(attempt, first, deadline=lambda: None, key_hint="…") == "answered"
    assert (clock.sleeps, attempts) == ([0.5], [2])


@pytest.mark.parametrize("clock", [VirtualClock(), None], ids=["virtual", "real"])
async def test_concurrent_retry_waits_overlap_on_the_virtual_clock_as_in_real_time(
    emulator: Emulator, clock: VirtualClock | None
) -> None:
    """Three calls each waiting out Retry-After: 0.3 under a 0.5 s deadline all succeed,
    on the real clock and on the virtual one alike: their waits overlap, not add up."""
    keys = [emulator.add_key() for _ in range(3)]
    for key in keys:
        emulator.script(key, [Fault.rate_limited(0.3)])
    async with AccountClient(base_url=emulator.url, clock=clock, timeout=0.5) as client:
        profiles = await asyncio.gather(*(client.account.profile(api_key=k) for k in keys))
    assert len(profiles) == 3
    assert all(emulator.attempts(key) == 2 for key in keys)
