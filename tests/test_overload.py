"""Under overload (issue 24): the retry budget and single-flight (coalesced) reads.

Every test runs on the emulator over real loopback sockets; retry waits go through a
VirtualClock, so an outage's backoff costs no time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from decimal import Decimal

import pytest

from accountapi import (
    AccountClient,
    APIConnectionError,
    APITimeoutError,
    ClientStateError,
    ConfigurationError,
    InternalServerError,
    Limits,
    Profile,
    RateLimitError,
    RetryBudget,
    ServiceUnavailableError,
    SyncAccountClient,
)
from accountapi.testing import Emulator, Fault, VirtualClock

PROFILE = "/v1/account/profile"


def _client(emulator: Emulator, key: str, clock: VirtualClock, **options: object) -> AccountClient:
    return AccountClient(key, base_url=emulator.url, clock=clock, **options)  # type: ignore[arg-type]


# -- the retry budget -------------------------------------------------------------------


async def test_an_outage_drains_the_budget_and_successes_refill_it(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """Four 503 retries at 5 tokens empty a 20-token budget; the next 503 is not retried
    (flagged, one request); four successes refill 4 tokens, too few, the fifth makes a
    retry affordable again."""
    budget = RetryBudget(capacity=20, retry_cost=5, refill=1)
    emulator.script(key, [Fault.status(503)] * 6)
    async with _client(emulator, key, clock, retry_budget=budget) as client:
        with pytest.raises(ServiceUnavailableError) as first:
            await client.account.profile()
        assert first.value.attempts == 5
        assert not first.value.retry_budget_exhausted
        assert budget.level == 0
        with pytest.raises(ServiceUnavailableError) as refused:
            await client.account.profile()
        assert refused.value.attempts == 1
        assert refused.value.retry_budget_exhausted
        assert budget.refused == 1
        assert any("retry budget is spent" in note for note in refused.value.__notes__)
        assert emulator.attempts(key) == 6
        for _ in range(4):
            await client.account.profile()
        assert budget.level == 4
        emulator.script(key, [Fault.status(503)])
        with pytest.raises(ServiceUnavailableError) as still:
            await client.account.profile()
        assert still.value.retry_budget_exhausted
        await client.account.profile()  # the fifth success
        assert budget.level == 5
        emulator.script(key, [Fault.status(503)])
        await client.account.profile()  # retried: the 503, then the answer
        assert emulator.attempts(key) == 6 + 4 + 1 + 1 + 2
        # A retry that succeeds gives back what it took.
        assert budget.level == 5


async def test_a_first_attempt_is_never_refused(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """With a budget that can never pay for a retry, every call still sends its one
    request: 20 failing calls send 20 requests, and a healthy call succeeds."""
    budget = RetryBudget(capacity=1, retry_cost=5)
    emulator.script(key, [Fault.status(503)] * 20)
    async with _client(emulator, key, clock, retry_budget=budget) as client:
        for _ in range(20):
            with pytest.raises(ServiceUnavailableError) as caught:
                await client.account.profile()
            assert caught.value.attempts == 1
            assert caught.value.retry_budget_exhausted
        assert isinstance(await client.account.profile(), Profile)
    assert emulator.attempts(key) == 21
    assert budget.refused == 20


async def test_429_does_not_draw_from_the_budget(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """An empty budget still retries a 429 (the key's limit, paced by its cool-down),
    and refuses a 503."""
    budget = RetryBudget(capacity=4, retry_cost=5)
    emulator.script(key, [Fault.rate_limited(1), Fault.rate_limited(1)])
    async with _client(emulator, key, clock, retry_budget=budget) as client:
        await client.account.profile()
        assert emulator.attempts(key) == 3
        emulator.script(key, [Fault.status(503)])
        with pytest.raises(ServiceUnavailableError):
            await client.account.profile()
    assert emulator.attempts(key) == 4
    assert budget.level == 4


async def test_a_connection_failure_costs_more_than_a_503(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """With 15 tokens, dropped connections are retried once (10 tokens) where 503s
    would be retried three times (5 each)."""
    budget = RetryBudget(capacity=15, retry_cost=5, connection_retry_cost=10, refill=0)
    emulator.script(key, [Fault.drop()] * 3)
    async with _client(emulator, key, clock, retry_budget=budget) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.account.profile()
    assert caught.value.attempts == 2
    assert caught.value.retry_budget_exhausted
    assert budget.level == 5


async def test_the_budget_is_shared_by_derived_clients_and_balances(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """One budget for a client, its with_options() clients and its balances() runs: each
    failed retry, wherever made, leaves fewer tokens for the others."""
    keys = [emulator.add_key() for _ in range(3)]
    budget = RetryBudget(capacity=10, retry_cost=5, refill=0)
    async with _client(emulator, keys[0], clock, retry_budget=budget) as client:
        derived = client.with_options(timeout=30, max_retries=1)
        assert derived.retry_budget is budget
        emulator.script(keys[0], [Fault.status(503)] * 2)
        with pytest.raises(ServiceUnavailableError):
            await derived.account.profile()
        assert budget.level == 5
        emulator.script(keys[1], [Fault.status(503)] * 2)
        (result,) = [r async for r in client.balances([keys[1]])]
        assert isinstance(result.error, ServiceUnavailableError)
        assert result.error.attempts == 2
        assert budget.level == 0
        emulator.script(keys[2], [Fault.status(503)])
        results = [r async for r in derived.balances([keys[2]])]
        assert isinstance(results[0].error, ServiceUnavailableError)
        assert results[0].error.retry_budget_exhausted


async def test_balances_under_an_outage_sends_about_one_request_per_key(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """200 keys during an all-503 outage: the default budget (500 tokens, 5 a retry)
    pays for 100 retries, so 300 requests instead of 1,000, and every key has a result."""
    keys = [emulator.add_key(fault=Fault.status(503)) for _ in range(200)]
    async with AccountClient(base_url=emulator.url, clock=clock) as client:
        results = [r async for r in client.balances(keys, concurrency=50)]
    assert len(results) == 200
    assert all(isinstance(r.error, ServiceUnavailableError) for r in results)
    assert sum(emulator.attempts(k) for k in keys) == 300


async def test_the_sync_client_and_its_derived_clients_share_one_budget(
    emulator: Emulator, key: str
) -> None:
    """A SyncAccountClient's calls (and a with_options() copy's) draw from its budget."""
    budget = RetryBudget(capacity=5, retry_cost=5, refill=0)
    emulator.script(key, [Fault.status(503)] * 3)

    def work() -> ServiceUnavailableError:
        clock = VirtualClock()
        with SyncAccountClient(key, base_url=emulator.url, clock=clock, retry_budget=budget) as c:
            derived = c.with_options(timeout=20, max_retries=1)
            assert derived.retry_budget is budget is c.retry_budget
            with pytest.raises(ServiceUnavailableError):
                derived.account.profile()  # the 503, a retry (5 tokens), the 503
            with pytest.raises(ServiceUnavailableError) as caught:
                c.account.profile()
            return caught.value

    error = await asyncio.to_thread(work)
    assert error.retry_budget_exhausted
    assert emulator.attempts(key) == 3


async def test_no_budget_retries_as_before(
    emulator: Emulator, key: str, clock: VirtualClock
) -> None:
    """retry_budget=None: every call makes all its retries, however many fail."""
    emulator.script(key, [Fault.status(503)] * 15)
    async with _client(emulator, key, clock, retry_budget=None, max_retries=4) as client:
        assert client.retry_budget is None
        for _ in range(3):
            with pytest.raises(ServiceUnavailableError) as caught:
                await client.account.profile()
            assert caught.value.attempts == 5
            assert not caught.value.retry_budget_exhausted


async def test_a_refusal_is_logged_with_the_hint_only(
    emulator: Emulator, key: str, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused retry is an INFO line with the level and the key's hint; every retry
    line shows the budget's level."""
    caplog.set_level(logging.DEBUG, logger="accountapi")
    budget = RetryBudget(capacity=5, retry_cost=5, refill=0)
    emulator.script(key, [Fault.status(503)] * 3)
    async with _client(emulator, key, clock, retry_budget=budget) as client:
        with pytest.raises(ServiceUnavailableError):
            await client.account.profile()
    messages = [r.getMessage() for r in caplog.records]
    assert any("retrying after" in m and "budget=0/5" in m for m in messages)
    (refusal,) = [m for m in messages if m.startswith("not retrying")]
    assert "0 of 5 tokens left" in refusal
    assert key[-4:] in refusal
    assert all(key not in m for m in messages)


def test_bad_budget_and_coalesce_options_are_refused() -> None:
    """A budget needs a capacity of at least one and whole-number costs; coalesce a bool."""
    with pytest.raises(ConfigurationError, match="capacity"):
        RetryBudget(capacity=0)
    with pytest.raises(ConfigurationError, match="retry_cost"):
        RetryBudget(retry_cost=-1)
    with pytest.raises(ConfigurationError, match="retry_budget"):
        AccountClient("dpct_" + "a" * 32, retry_budget=500)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="coalesce"):
        AccountClient("dpct_" + "a" * 32, coalesce="yes")  # type: ignore[arg-type]


# -- single-flight reads -----------------------------------------------------------------


async def test_concurrent_reads_of_one_key_share_one_request(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """50 concurrent profile() calls with coalesce=True: one request, one Profile for
    all; without it, 50 requests."""
    key = emulator.add_key({"balance_eur": "3.500000"}, latency=0.05)
    async with _client(emulator, key, clock, coalesce=True) as client:
        profiles = await asyncio.gather(*(client.account.profile() for _ in range(50)))
        assert emulator.attempts(key) == 1
        assert all(p is profiles[0] for p in profiles)  # frozen: shared safely
        assert profiles[0].balance_eur == Decimal("3.5")
        await asyncio.gather(*(client.account.profile(coalesce=False) for _ in range(50)))
    assert emulator.attempts(key) == 51


async def test_per_call_coalesce_and_with_options(emulator: Emulator, clock: VirtualClock) -> None:
    """coalesce=True per call on a plain client, and with_options(coalesce=True)."""
    key = emulator.add_key(latency=0.05)
    async with _client(emulator, key, clock) as client:
        assert client.coalesce is False
        await asyncio.gather(*(client.account.profile(coalesce=True) for _ in range(10)))
        assert emulator.attempts(key) == 1
        shared = client.with_options(coalesce=True)
        assert shared.coalesce is True
        await asyncio.gather(*(shared.account.profile() for _ in range(10)))
        assert emulator.attempts(key) == 2


async def test_a_read_already_sent_is_not_joined(emulator: Emulator, clock: VirtualClock) -> None:
    """A caller arriving once the read is on the wire sends its own, and sees the
    balance as it is after its call began, not the one the earlier read may carry."""
    key = emulator.add_key({"balance_eur": "1.000000"}, latency=0.3)
    async with _client(emulator, key, clock, coalesce=True) as client:
        first = asyncio.create_task(client.account.profile())
        await emulator.wait_for_attempts(key, 1)
        emulator.profile(key)["balance_eur"] = "2.000000"
        second = await client.account.profile()
        await first
    assert emulator.attempts(key) == 2
    assert second.balance_eur == Decimal("2")


async def test_only_identical_reads_join(emulator: Emulator, clock: VirtualClock) -> None:
    """Other keys, other extra headers or another retry count make separate reads."""
    key = emulator.add_key(latency=0.05)
    other = emulator.add_key(latency=0.05)
    async with _client(emulator, key, clock, coalesce=True) as client:
        await asyncio.gather(
            client.account.profile(),
            client.account.profile(),
            client.account.profile(api_key=other),
            client.account.profile(extra_headers={"X-Tenant": "a"}),
            client.account.profile(max_retries=0),
        )
    assert emulator.attempts(key) == 3
    assert emulator.attempts(other) == 1


async def test_a_joined_caller_gives_up_at_its_own_deadline(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """A joiner with 0.1 s gets APITimeoutError at its deadline; the read goes on and
    answers the owner; one request in all."""
    key = emulator.add_key(latency=0.6)
    async with _client(emulator, key, clock, coalesce=True) as client:
        owner = asyncio.create_task(client.account.profile(timeout=10))
        await asyncio.sleep(0)  # the owner's read exists, not yet sent
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(APITimeoutError) as caught:
            await client.account.profile(timeout=0.1)
        assert loop.time() - started < 0.5
        assert caught.value.attempts == 0
        assert isinstance(await owner, Profile)
    assert emulator.attempts(key) == 1


async def test_a_joiner_outlives_an_owner_with_a_shorter_deadline(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """The read runs until its latest caller's deadline: the owner (0.2 s) times out,
    the joiner (10 s) gets the answer of the same single request."""
    key = emulator.add_key(latency=0.6)
    async with _client(emulator, key, clock, coalesce=True) as client:
        owner = asyncio.create_task(client.account.profile(timeout=0.2))
        joiner = asyncio.create_task(client.account.profile(timeout=10))
        with pytest.raises(APITimeoutError):
            await owner
        assert isinstance(await joiner, Profile)
    assert emulator.attempts(key) == 1


async def test_a_joiner_queued_for_a_slot_extends_the_reads_wait(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """A read queued behind the key's 10 busy slots, joined during the queue by a
    caller with a longer deadline, keeps waiting for its slot for that caller."""
    key = emulator.add_key(latency=0.6)
    async with _client(emulator, key, clock) as client:
        busy = [asyncio.create_task(client.account.profile()) for _ in range(10)]
        await emulator.wait_for_attempts(key, 10)
        owner = asyncio.create_task(client.account.profile(timeout=0.2, coalesce=True))
        await asyncio.sleep(0)  # the owner makes its read
        await asyncio.sleep(0)  # the read's first step: queued for a slot
        joiner = asyncio.create_task(client.account.profile(timeout=10, coalesce=True))
        with pytest.raises(APITimeoutError):
            await owner
        assert isinstance(await joiner, Profile)
        await asyncio.gather(*busy)
    assert emulator.attempts(key) == 11


@pytest.mark.parametrize("moment", ["before it starts", "queued", "on the wire"])
async def test_the_owner_cancelled_while_joiners_wait(
    emulator: Emulator, clock: VirtualClock, moment: str
) -> None:
    """Cancelling the caller that started the read, wherever the read is, leaves it
    running for the callers that joined it: they get the one request's answer."""
    key = emulator.add_key(latency=0.3)
    async with _client(emulator, key, clock, coalesce=True) as client:
        busy: list[asyncio.Task[Profile]] = []
        if moment == "queued":
            busy = [asyncio.create_task(client.account.profile(coalesce=False)) for _ in range(10)]
            await emulator.wait_for_attempts(key, 10)
        owner = asyncio.create_task(client.account.profile())
        joiners = [asyncio.create_task(client.account.profile()) for _ in range(3)]
        # One loop step: the owner has made the read and the joiners have joined it; the
        # read's own task has not run yet.
        await asyncio.sleep(0)
        if moment == "queued":
            await asyncio.sleep(0)  # one more: the read's first step queues it for a slot
        if moment == "on the wire":
            await emulator.wait_for_attempts(key, 1)
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        profiles = await asyncio.gather(*joiners)
        assert all(isinstance(p, Profile) for p in profiles)
        await asyncio.gather(*busy)
    assert emulator.attempts(key) == 1 + len(busy)


async def test_cancelling_a_joiner_leaves_the_read_for_the_others(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """A joiner cancelled mid-wait raises CancelledError; the owner and other joiners
    still get the answer of the one request."""
    key = emulator.add_key(latency=0.3)
    async with _client(emulator, key, clock, coalesce=True) as client:
        calls = [asyncio.create_task(client.account.profile()) for _ in range(3)]
        await emulator.wait_for_attempts(key, 1)
        calls[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await calls[1]
        assert isinstance(await calls[0], Profile)
        assert isinstance(await calls[2], Profile)
    assert emulator.attempts(key) == 1


async def test_when_every_caller_has_left_the_read_is_cancelled(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """All callers cancelled: the read is cancelled too and gives its slot back at once
    (with one slot per key, the next call gets it instead of waiting out the 30 s
    answer), and the next coalesced call starts a fresh read."""
    key = emulator.add_key()
    emulator.script(key, [Fault.delay(30)])
    limits = Limits(per_key=1)
    async with _client(emulator, key, clock, coalesce=True, limits=limits) as client:
        calls = [asyncio.create_task(client.account.profile()) for _ in range(3)]
        await emulator.wait_for_attempts(key, 1)
        for call in calls:
            call.cancel()
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert isinstance(await client.account.profile(timeout=5), Profile)
    assert emulator.attempts(key) == 2


async def test_errors_are_shared_as_copies(emulator: Emulator, clock: VirtualClock) -> None:
    """A 500 answers every caller with its own InternalServerError: equal, not the same
    object, no shared details or notes, from one request."""
    key = emulator.add_key(latency=0.05)
    emulator.script(key, [Fault.status(500, details={"why": ["down"]})])
    async with _client(emulator, key, clock, coalesce=True) as client:
        errors = await asyncio.gather(
            *(client.account.profile() for _ in range(3)), return_exceptions=True
        )
    assert emulator.attempts(key) == 1
    assert all(isinstance(e, InternalServerError) for e in errors)
    first, second, third = errors
    assert len({id(first), id(second), id(third)}) == 3
    assert isinstance(first, InternalServerError)
    assert isinstance(second, InternalServerError)
    assert first.details == second.details == {"why": ["down"]}
    assert first.details is not second.details
    assert first.request_id == second.request_id
    first.add_note("mine")
    assert not getattr(second, "__notes__", None)
    assert first.key_hint == second.key_hint == key[:5] + "…" + key[-4:]


async def test_the_per_key_limit_still_holds(emulator: Emulator, clock: VirtualClock) -> None:
    """300 calls on one key, coalesced and not, mixed: never more than 10 requests in
    flight, no 429 from the limit."""
    key = emulator.add_key(latency=0.02)
    async with _client(emulator, key, clock, coalesce=True) as client:
        calls = []
        for i in range(300):
            calls.append(client.account.profile(coalesce=i % 3 != 0))
        profiles = await asyncio.gather(*calls)
    assert len(profiles) == 300
    assert emulator.max_in_flight(key) <= 10
    assert emulator.limit_rejections == 0
    assert emulator.attempts(key) < 200


async def test_the_client_closed_while_joiners_wait(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """aclose() ends the read, and every caller gets its own ClientStateError; a call
    afterwards is refused at once."""
    key = emulator.add_key(latency=5.0)
    client = _client(emulator, key, clock, coalesce=True)
    calls = [asyncio.create_task(client.account.profile()) for _ in range(3)]
    await emulator.wait_for_attempts(key, 1)
    await client.aclose()
    errors = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(e, ClientStateError) for e in errors)
    assert len({id(e) for e in errors}) == 3
    with pytest.raises(ClientStateError):
        await client.account.profile()


async def test_the_client_closed_before_the_read_starts(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """Closed between the first call and its read's first step: callers get
    ClientStateError, nothing is sent."""
    key = emulator.add_key()
    client = _client(emulator, key, clock, coalesce=True)
    await client.account.profile()  # binds the loop
    calls = [asyncio.create_task(client.account.profile()) for _ in range(2)]
    await asyncio.sleep(0)  # the read exists and has not run yet
    await client.aclose()
    errors = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(e, ClientStateError) for e in errors), errors
    assert emulator.attempts(key) == 1


async def test_dismiss_and_with_response_never_join(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """coalesce=True on the client: dismiss_notifications() and with_response.profile()
    still send one request per call."""
    key = emulator.add_key(latency=0.05)
    async with _client(emulator, key, clock, coalesce=True) as client:
        await asyncio.gather(*(client.account.dismiss_notifications() for _ in range(5)))
        await asyncio.gather(*(client.account.with_response.profile() for _ in range(5)))
    assert emulator.attempts(key, "/v1/account/notifications/dismiss") == 5
    assert emulator.attempts(key) == 5


async def test_a_shared_read_retries_under_the_budget(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """A coalesced read that meets a 503 retries once for all its callers."""
    key = emulator.add_key(latency=0.05)
    emulator.script(key, [Fault.status(503)])
    budget = RetryBudget()
    async with _client(emulator, key, clock, coalesce=True, retry_budget=budget) as client:
        profiles = await asyncio.gather(*(client.account.profile() for _ in range(20)))
    assert len(profiles) == 20
    assert emulator.attempts(key) == 2
    assert budget.level == budget.capacity


async def test_joining_is_logged_at_debug_with_the_hint_only(
    emulator: Emulator, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Each joined call logs one DEBUG line naming the key by its hint."""
    caplog.set_level(logging.DEBUG, logger="accountapi")
    key = emulator.add_key(latency=0.05)
    async with _client(emulator, key, clock, coalesce=True) as client:
        await asyncio.gather(*(client.account.profile() for _ in range(4)))
    joined = [r.getMessage() for r in caplog.records if "joined a shared read" in r.getMessage()]
    assert len(joined) == 3
    assert all(key[-4:] in line and key not in line for line in joined)
    assert all(key not in r.getMessage() for r in caplog.records)


async def test_the_sync_client_coalesces_across_threads(emulator: Emulator) -> None:
    """Threads calling one SyncAccountClient(coalesce=True) share reads; the per-call
    switch works too."""
    key = emulator.add_key(latency=0.5)
    results: list[Profile] = []
    lock = threading.Lock()

    def work() -> None:
        # One slot per key: the first read is sent, the second queues, the rest join it.
        limits = Limits(per_key=1)
        with SyncAccountClient(key, base_url=emulator.url, coalesce=True, limits=limits) as client:
            assert client.coalesce

            def one() -> None:
                profile = client.account.profile()
                with lock:
                    results.append(profile)

            threads = [threading.Thread(target=one) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            results.append(client.with_options(coalesce=False).account.profile(coalesce=True))

    await asyncio.to_thread(work)
    assert len(results) == 9
    assert emulator.attempts(key) <= 3


async def test_a_rate_limited_read_is_shared_with_its_wait(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """A 429 on a shared read: the read waits out Retry-After once for all callers."""
    key = emulator.add_key(latency=0.05)
    emulator.script(key, [Fault.rate_limited(2)])
    async with _client(emulator, key, clock, coalesce=True) as client:
        profiles = await asyncio.gather(*(client.account.profile() for _ in range(5)))
    assert len(profiles) == 5
    assert emulator.attempts(key) == 2
    assert [s for s in clock.sleeps if s >= 2] == [pytest.approx(2.001, abs=0.01)]


async def test_a_lone_coalesced_call_times_out_and_frees_its_slot(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """A deadline shorter than the read: APITimeoutError at the deadline, and the read
    (nobody waiting for it any more) gives its slot back at once."""
    key = emulator.add_key()
    emulator.script(key, [Fault.delay(30)])
    limits = Limits(per_key=1)
    async with _client(emulator, key, clock, coalesce=True, limits=limits) as client:
        with pytest.raises(APITimeoutError):
            await client.account.profile(timeout=0.2)
        assert isinstance(await client.account.profile(timeout=5), Profile)
    assert emulator.attempts(key) == 2


async def test_a_read_that_failed_before_sending_is_not_joined(
    emulator: Emulator, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A read refused before it sent anything (the key cooling down) is over, even in
    the loop step before its bookkeeping runs: a caller arriving then makes its own
    read instead of taking the earlier caller's error."""
    caplog.set_level(logging.DEBUG, logger="accountapi")
    key = emulator.add_key()
    async with _client(emulator, key, clock, coalesce=True) as client:
        await client.key_gate.cool_down(key, 50.0)
        first = asyncio.create_task(client.account.profile())
        await asyncio.sleep(0)  # the first call makes its read
        second = asyncio.create_task(client.account.profile())  # runs right after the read
        errors = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(e, RateLimitError) for e in errors)
    assert not [r for r in caplog.records if "joined a shared read" in r.getMessage()]
    assert emulator.attempts(key) == 0
