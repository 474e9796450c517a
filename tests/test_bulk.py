"""client.balances(): one result per key, bounded work, clean cancellation; BalanceSummary."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import resource
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from accountapi import (
    AccountAPIError,
    AccountClient,
    APITimeoutError,
    AuthenticationError,
    BalanceFailed,
    BalanceOk,
    BalanceResult,
    BalanceStream,
    BalanceSummary,
    ClientStateError,
    ConfigurationError,
    MalformedAPIKeyError,
    PaymentRequiredError,
    Profile,
    key_hint,
)
from accountapi._calls import CallPath
from accountapi._callstate import Call
from accountapi.gates import MemoryKeyGate
from accountapi.testing import Emulator, Fault, VirtualClock


async def collect(stream: BalanceStream) -> list[BalanceResult]:
    async with stream:
        return [result async for result in stream]


def unregistered(n: int) -> str:
    """A well-formed key the emulator does not know (its answer is 401)."""
    return f"dpct_unknown{n:020d}"


def other_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


@contextlib.asynccontextmanager
async def client_on(url: str) -> AsyncIterator[tuple[AccountClient, aiohttp.TCPConnector]]:
    """A client on a session whose connector the test can inspect."""
    connector = aiohttp.TCPConnector()
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        AccountClient(base_url=url, session=session) as client,
    ):
        yield client, connector


def assert_nothing_left(
    client: AccountClient, connector: aiohttp.TCPConnector, keys: list[str]
) -> None:
    """No task but the test's, no gate slot held, no connection checked out of the pool."""
    assert other_tasks() == set()
    assert_gate_empty(client, keys)
    assert len(connector._acquired) == 0  # read-only look: aiohttp has no public count


def assert_gate_empty(client: AccountClient, keys: list[str]) -> None:
    gate = client.key_gate
    assert isinstance(gate, MemoryKeyGate)
    assert len(gate) == 0  # no state at all, so no key has a slot in flight


@contextlib.contextmanager
def emulator_thread(n_keys: int, latency: float) -> Iterator[tuple[str, list[str]]]:
    """An emulator served from its own thread and loop, so the test's loop holds only client tasks."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        async with Emulator(latency=latency) as emu:
            box["url"] = emu.url
            box["keys"] = [emu.add_key() for _ in range(n_keys)]
            stop = asyncio.Event()
            box["stop"] = (asyncio.get_running_loop(), stop)
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the emulator thread did not start"
    try:
        yield box["url"], box["keys"]
    finally:
        loop, stop = box["stop"]
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


# -- correctness over many keys ------------------------------------------------------------

TRANSIENT_SCRIPTS: list[list[Fault]] = [
    [Fault.rate_limited(0.5)],
    [Fault.status(502)],
    [Fault.html(503)],
    [Fault.empty(503), Fault.status(502)],
    [Fault.rate_limited(1), Fault.html(502), Fault.status(503)],
]


@pytest.mark.slow
async def test_5000_mixed_keys_give_one_correct_result_each(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """5,000 valid, 401, sticky-402 and transiently failing keys: one right result each, limits kept."""
    rng = random.Random(5000)  # noqa: S311 - a reproducible shuffle, not a secret
    kinds: dict[str, str] = {}
    scripted: dict[str, int] = {}
    for i in range(3500):
        balance = "0.000000" if i % 25 == 0 else f"{i % 500}.{(i * 7919) % 1_000_000:06d}"
        key = emulator.add_key({"balance_eur": balance, "held_eur": f"0.{i % 100:02d}0000"})
        kinds[key] = "ok"
    for i in range(500):
        kinds[unregistered(i)] = "auth"
    for _ in range(300):
        kinds[emulator.add_key(fault=Fault.status(402))] = "credit"
    for i in range(700):
        key = emulator.add_key()
        script = TRANSIENT_SCRIPTS[i % len(TRANSIENT_SCRIPTS)]
        emulator.script(key, script)
        kinds[key] = "transient"
        scripted[key] = len(script)
    keys = list(kinds)
    rng.shuffle(keys)

    async with AccountClient(base_url=emulator.url, clock=clock) as client:
        # No per-call deadline: virtual time jumps with every key's retry wait, and a
        # deadline would be run down by other keys' waits.
        results = await collect(client.balances(keys, concurrency=200, timeout=None))

    assert len(results) == len(keys)
    assert sorted(r.index for r in results) == list(range(len(keys)))
    for result in results:
        key = keys[result.index]
        assert result.key == key
        assert result.key_hint == key_hint(key)
        assert not result.shared
        kind = kinds[key]
        if kind in ("ok", "transient"):
            assert result.ok, (kind, result.error)
            assert result.profile is not None
            assert str(result.profile.balance_eur) == emulator.profile(key)["balance_eur"]
            assert str(result.profile.held_eur) == emulator.profile(key)["held_eur"]
            expected = 1 + scripted.get(key, 0)
            assert result.attempts == expected
            assert emulator.attempts(key) == expected
        elif kind == "auth":
            assert isinstance(result.error, AuthenticationError)
            assert result.error.key_hint == key_hint(key)
            assert result.attempts == 1
        else:
            assert isinstance(result.error, PaymentRequiredError)
            assert result.error.code == "credit_insufficient"
            assert result.attempts == 1
            assert emulator.attempts(key) == 1
        if kind != "auth":
            assert emulator.max_in_flight(key) <= 10
    assert emulator.limit_rejections == 0

    summary = BalanceSummary()
    for result in results:
        summary.add(result)
    assert (summary.total, summary.ok, summary.failed) == (5000, 4200, 800)
    assert summary.auth_failed == 500
    assert summary.by_error == {"AuthenticationError": 500, "PaymentRequiredError": 300}
    expected_total = sum(
        (
            Decimal(emulator.profile(k)["balance_eur"])
            for k in keys
            if kinds[k] in ("ok", "transient")
        ),
        Decimal(0),
    )
    assert summary.total_balance_eur == expected_total


async def test_concurrent_streams_share_the_per_key_limit(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """Thirty streams over the same keys on one client never put more than 10 requests of a key in flight."""
    keys = [emulator.add_key(latency=0.05) for _ in range(4)]
    async with AccountClient(base_url=emulator.url, clock=clock) as client:
        runs = await asyncio.gather(*(collect(client.balances(keys)) for _ in range(30)))
    assert all(len(run) == 4 and all(r.ok for r in run) for run in runs)
    for key in keys:
        assert emulator.max_in_flight(key) == 10
        assert emulator.attempts(key) == 30
    assert emulator.limit_rejections == 0


async def test_results_stream_as_they_complete(emulator: Emulator, client: AccountClient) -> None:
    """Unordered, a slow first key does not hold back the fast ones behind it."""
    slow = emulator.add_key(latency=0.3)
    fast = [emulator.add_key() for _ in range(5)]
    results = await collect(client.balances([slow, *fast]))
    assert [r.index for r in results][-1] == 0
    assert sorted(r.index for r in results) == list(range(6))


async def test_ordered_yields_in_input_order_with_a_bounded_buffer(
    emulator: Emulator, client: AccountClient
) -> None:
    """ordered=True yields by input index; behind a slow key, at most 4*concurrency results wait."""
    slow = emulator.add_key(latency=0.3)
    fast = [emulator.add_key() for _ in range(60)]
    pulled = 0

    def keys() -> Iterator[str]:
        nonlocal pulled
        for key in [slow, *fast]:
            pulled += 1
            yield key

    concurrency = 2
    pulled_at_first: int | None = None
    indexes = []
    async with client.balances(keys(), concurrency=concurrency, ordered=True) as stream:
        async for result in stream:
            if pulled_at_first is None:
                pulled_at_first = pulled
            indexes.append(result.index)
            assert result.key == [slow, *fast][result.index]
    assert indexes == list(range(61))
    assert pulled_at_first is not None
    assert pulled_at_first <= 4 * concurrency + concurrency


async def test_input_is_read_lazily_and_in_flight_work_is_bounded(
    emulator: Emulator, client: AccountClient
) -> None:
    """At most `concurrency` calls run at once (counted at the server, across keys), and
    keys are pulled only as workers free up."""
    keys = [emulator.add_key(latency=0.01) for _ in range(200)]
    pulled = 0

    async def source() -> AsyncIterator[str]:
        nonlocal pulled
        for key in keys:
            pulled += 1
            yield key

    concurrency = 7
    async with client.balances(source(), concurrency=concurrency) as stream:
        first = await anext(stream)
        # Workers hold one key each and the result queue holds at most `concurrency`.
        assert pulled <= 3 * concurrency
        rest = [r async for r in stream]
    assert first.ok
    assert len(rest) == 199
    assert emulator.max_in_flight() == concurrency


# -- duplicates ---------------------------------------------------------------------------


async def test_duplicates_in_flight_are_checked_once(
    emulator: Emulator, client: AccountClient
) -> None:
    """A key repeated while its check runs is requested once; each occurrence gets its own result."""
    a = emulator.add_key(latency=0.1)
    b = emulator.add_key(latency=0.1)
    bad = unregistered(1)
    keys = [a, b, a, bad, a, b, bad]
    results = sorted(await collect(client.balances(keys)), key=lambda r: r.index)
    assert [r.key for r in results] == keys
    assert emulator.attempts(a) == 1
    assert emulator.attempts(b) == 1
    assert emulator.attempts(bad, include_unauthorized=True) == 1
    for key in (a, b, bad):
        mine = [r for r in results if r.key == key]
        assert sum(not r.shared for r in mine) == 1
        assert len({id(r.error) for r in mine if r.error is not None}) == len(
            [r for r in mine if r.error is not None]
        )
    assert all(r.ok for r in results if r.key != bad)
    assert all(isinstance(r.error, AuthenticationError) for r in results if r.key == bad)
    assert results[2].profile == results[0].profile
    # Attempts add up to the requests sent: a shared occurrence made none of its own.
    assert [r.attempts for r in results if r.shared] == [0, 0, 0, 0]
    assert sum(r.attempts for r in results) == 3
    shared_errors = [r.error for r in results if r.shared and r.error is not None]
    assert [e.attempts for e in shared_errors] == [1]  # the copy still tells what the check took


async def test_dedupe_window_covers_near_duplicates_only(
    emulator: Emulator, client: AccountClient
) -> None:
    """A repeat within dedupe_window completed keys reuses the check; a repeat beyond it is checked again."""
    a, b, c, d = (emulator.add_key() for _ in range(4))
    first, _, repeat = await collect(client.balances([a, b, a], concurrency=1))
    assert emulator.attempts(a) == 1
    # The window keeps the answer's body; the repeat gets the same profile, decoded again.
    assert repeat.shared
    assert not first.shared
    assert repeat.profile == first.profile
    assert repeat.profile is not None
    assert repeat.profile.balance_eur == first.profile.balance_eur  # type: ignore[union-attr]
    await collect(client.balances([c, b, d, c], concurrency=1, dedupe_window=2))
    assert emulator.attempts(c) == 2
    await collect(client.balances([d, d], concurrency=1, dedupe_window=0))
    assert emulator.attempts(d) == 3  # once above, twice here


async def test_a_full_window_keeps_its_size_exact_while_it_evicts(
    emulator: Emulator, client: AccountClient
) -> None:
    """Past dedupe_window keys every check evicts the oldest (a body or an error): the
    window then holds exactly the last ``dedupe_window`` outcomes, and its byte count is
    the sum of what it holds, so its byte cap keeps meaning what it says."""
    from accountapi._bulk import _weight

    unknown = "dpct_" + "N" * 28 + "z9Q4"  # not the emulator's: a 401, kept as an error
    keys = [emulator.add_key() for _ in range(30)]
    keys[10:10] = [unknown]
    keys.append(unknown)
    stream = client.balances(keys, concurrency=1, dedupe_window=5)
    async with stream:
        results = [result async for result in stream]
        engine = stream._engine
        recent = engine._recent
        assert len(recent) == 5
        assert engine._window_bytes == sum(_weight(kept) for kept in recent.values())
    assert len(results) == 32
    # The unknown key's error left the window long before it came again: checked twice.
    assert [r.shared for r in results if r.key == unknown] == [False, False]


# -- every failure is a result ----------------------------------------------------------------


async def test_malformed_keys_become_results_without_requests(
    emulator: Emulator, client: AccountClient
) -> None:
    """Keys with whitespace, non-ASCII or nothing at all are MalformedAPIKeyError results, never sent."""
    good = emulator.add_key()
    spaced = "dpct_secret part 1234567890"
    keys = [spaced, "", "dpct_ünïcode_1234567890", good, 42]
    results = sorted(await collect(client.balances(keys)), key=lambda r: r.index)  # type: ignore[arg-type]
    assert [r.ok for r in results] == [False, False, False, True, False]
    for result in (results[0], results[1], results[2], results[4]):
        assert isinstance(result.error, MalformedAPIKeyError)
        assert result.attempts == 0
    assert "secret" not in results[0].key_hint
    assert "secret" not in str(results[0].error)
    assert len(emulator.records) == 1


async def test_an_async_input_yielding_none_gets_a_result_for_it(
    emulator: Emulator, client: AccountClient
) -> None:
    """None from an async input is a malformed key with its own result, not the end of input."""
    good = emulator.add_key()

    async def source() -> AsyncIterator[str | None]:
        for key in (good, None, good + "x", good):
            yield key

    results = sorted(await collect(client.balances(source())), key=lambda r: r.index)  # type: ignore[arg-type]
    assert [r.index for r in results] == [0, 1, 2, 3]
    assert isinstance(results[1].error, MalformedAPIKeyError)
    assert results[1].key_hint == "…"
    assert results[0].ok
    assert results[3].ok


async def test_a_bug_in_one_call_is_that_keys_result_and_logged_without_the_key(
    emulator: Emulator,
    client: AccountClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A non-SDK exception from one key's call becomes an AccountAPIError result; the rest still run."""
    keys = [emulator.add_key() for _ in range(5)]
    doomed = keys[2]
    real = CallPath.request

    async def buggy(self: CallPath, *args: Any, **kwargs: Any) -> tuple[Profile, Call[Profile]]:
        if args[3].reveal() == doomed:  # (method, url, parse, key, timeout)
            raise RuntimeError(f"bug with {doomed}")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(CallPath, "request", buggy)
    with caplog.at_level(logging.ERROR, logger="accountapi"):
        results = sorted(await collect(client.balances(keys)), key=lambda r: r.index)
    assert [r.ok for r in results] == [True, True, False, True, True]
    error = results[2].error
    assert type(error) is AccountAPIError
    assert "RuntimeError" in str(error)
    assert isinstance(error.__cause__, RuntimeError)
    assert doomed not in str(error)
    assert key_hint(doomed) in caplog.text
    assert doomed not in caplog.text


async def test_per_call_timeout_applies_to_each_key(emulator: Emulator) -> None:
    """timeout= bounds each key's call; a key slower than it is an APITimeoutError result."""
    slow = emulator.add_key(latency=2.0)
    fast = emulator.add_key()
    async with AccountClient(base_url=emulator.url) as client:
        results = sorted(
            await collect(client.balances([slow, fast], timeout=0.2)), key=lambda r: r.index
        )
    assert isinstance(results[0].error, APITimeoutError)
    assert results[1].ok


async def test_a_failing_input_ends_the_stream_with_its_error(
    emulator: Emulator, client: AccountClient
) -> None:
    """Keys taken before the caller's iterable raised still get results; then its error is raised."""
    keys = [emulator.add_key() for _ in range(3)]

    def source() -> Iterator[str]:
        yield from keys
        raise OSError("keys file vanished")

    seen: list[BalanceResult] = []

    async def drain() -> None:
        async with client.balances(source()) as stream:
            async for result in stream:
                seen.append(result)

    with pytest.raises(OSError, match="keys file vanished"):
        await drain()
    assert sorted(r.index for r in seen) == [0, 1, 2]
    assert all(r.ok for r in seen)


# -- arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": -3},
        {"concurrency": True},
        {"concurrency": 2.5},
        {"dedupe_window": -1},
        {"timeout": "soon"},
    ],
)
async def test_bad_arguments_fail_at_the_call(
    client: AccountClient, kwargs: dict[str, Any]
) -> None:
    """Bad concurrency, window or timeout raise ConfigurationError when balances() is called."""
    with pytest.raises(ConfigurationError):
        client.balances(["dpct_x"], **kwargs)


async def test_a_single_string_is_not_a_key_list(client: AccountClient) -> None:
    """Passing one key as a str (an iterable of characters) is refused."""
    with pytest.raises(ConfigurationError, match="not a single str"):
        client.balances("dpct_abcdefghijklmnop")


async def test_a_closed_client_refuses_at_the_call(emulator: Emulator) -> None:
    """balances() on a closed client raises ClientStateError at once."""
    client = AccountClient(base_url=emulator.url)
    await client.aclose()
    with pytest.raises(ClientStateError):
        client.balances(["dpct_abcdefghijklmnop"])


async def test_empty_input_ends_at_once(client: AccountClient) -> None:
    """No keys, no results, no tasks left."""
    assert await collect(client.balances([])) == []
    assert await collect(client.balances(iter(()))) == []


# -- leaving early ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["async with", "aclosing"])
async def test_breaking_out_cancels_everything(how: str) -> None:
    """Leaving the loop early cancels the checks in flight: no task left, no gate slot held."""
    with emulator_thread(300, latency=0.05) as (url, keys):
        async with client_on(url) as (client, connector):
            stream = client.balances(keys, concurrency=50)
            manager = stream if how == "async with" else contextlib.aclosing(stream)
            async with manager:
                async for _ in stream:
                    break
            assert_nothing_left(client, connector, keys)
            assert "closed" in repr(stream)
            assert [r async for r in stream] == []


async def test_cancelling_the_consumer_cancels_everything() -> None:
    """Cancelling the task that iterates (no async with) cancels in-flight checks and leaves no task."""
    with emulator_thread(300, latency=0.05) as (url, keys):
        async with client_on(url) as (client, connector):
            got: list[BalanceResult] = []
            five = asyncio.Event()

            async def consume() -> None:
                async for result in client.balances(keys, concurrency=50):
                    got.append(result)
                    if len(got) == 5:
                        five.set()

            task = asyncio.create_task(consume())
            await five.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_nothing_left(client, connector, keys)
            assert 5 <= len(got) < 300


async def test_a_dropped_stream_cancels_its_workers() -> None:
    """After a bare break, the dropped stream cancels its workers as it is collected."""
    with emulator_thread(200, latency=0.05) as (url, keys):
        async with client_on(url) as (client, connector):
            async for _ in client.balances(keys, concurrency=20):
                break
            left = other_tasks()
            assert left, "the workers are still winding down"
            assert all(task.cancelling() or task.cancelled() for task in left)
            _, pending = await asyncio.wait(left, timeout=5)
            assert not pending
            assert_nothing_left(client, connector, keys)


async def test_closing_also_closes_an_async_input(
    emulator: Emulator, client: AccountClient
) -> None:
    """An async generator given as input is closed with the stream, not left to a finaliser."""
    keys = [emulator.add_key() for _ in range(50)]
    closed = False

    async def source() -> AsyncIterator[str]:
        nonlocal closed
        try:
            for key in keys:
                yield key
        finally:
            closed = True

    async with client.balances(source(), concurrency=3) as stream:
        await anext(stream)
    assert closed


# -- values -------------------------------------------------------------------------------


async def test_result_repr_never_shows_the_key(emulator: Emulator, client: AccountClient) -> None:
    """A result's repr and str name the key only by its hint."""
    key = emulator.add_key()
    [result] = await collect(client.balances([key]))
    assert result.ok
    assert key not in repr(result)
    assert key not in str(result)
    assert result.key_hint in repr(result)
    assert result.attempts == 1
    assert result.elapsed >= 0
    with pytest.raises(AttributeError):
        result.key = "other"  # type: ignore[misc]


def test_summary_sums_money_exactly() -> None:
    """Totals are exact Decimals beyond 28 digits, and counts split by outcome and error class."""
    big = Decimal("123456789012345678901234567890.123456")
    summary = BalanceSummary()
    for i, balance in enumerate([big, Decimal("0.000001"), Decimal("9.955000")]):
        profile = Profile(
            id=f"u{i}",
            email="e@example.test",
            balance_eur=balance,
            held_eur=Decimal("0.100000"),
            credit_limit_cents=0,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            email_verified=True,
            pending_credit_notice=False,
            prompt_analysis_opt_in=False,
            two_factor_enabled=False,
        )
        summary.add(BalanceOk(key=f"k{i}", index=i, profile=profile))
    summary.add(BalanceFailed(key="x", index=3, error=AuthenticationError("no", status=401)))
    summary.add(BalanceFailed(key="y", index=4, error=PaymentRequiredError("no", status=402)))
    assert summary.total_balance_eur == Decimal("123456789012345678901234567900.078457")
    assert str(summary.total_held_eur) == "0.300000"
    assert (summary.total, summary.ok, summary.failed, summary.auth_failed) == (5, 3, 2, 1)
    assert summary.by_error == {"AuthenticationError": 1, "PaymentRequiredError": 1}


async def test_summary_collects_a_stream(emulator: Emulator, client: AccountClient) -> None:
    """BalanceSummary.collect consumes client.balances() and totals the ok balances."""
    keys = [emulator.add_key({"balance_eur": "1.250000"}) for _ in range(4)] + [unregistered(9)]
    summary = await BalanceSummary.collect(client.balances(keys))
    assert (summary.total, summary.ok, summary.auth_failed) == (5, 4, 1)
    assert summary.total_balance_eur == Decimal("5.000000")


async def test_summary_totals_count_each_account_once(
    emulator: Emulator, client: AccountClient
) -> None:
    """Two keys of one account and a repeated key add that account's money once; counts say so."""
    first = emulator.add_key({"id": "acct-a", "balance_eur": "10.000000", "held_eur": "1.000000"})
    second = emulator.add_key({"id": "acct-a", "balance_eur": "10.000000", "held_eur": "1.000000"})
    other = emulator.add_key({"id": "acct-b", "balance_eur": "5.000000", "held_eur": "0.500000"})
    keys = [first, second, first, other, unregistered(7)]
    summary = await BalanceSummary.collect(client.balances(keys))
    assert (summary.total, summary.ok, summary.failed) == (5, 4, 1)
    assert (summary.distinct_keys, summary.accounts) == (4, 2)
    assert summary.total_balance_eur == Decimal("15.000000")
    assert summary.total_held_eur == Decimal("1.500000")
    assert first not in repr(summary)


# -- memory -------------------------------------------------------------------------------


def _resident_bytes() -> int:
    """Resident memory now (Linux); elsewhere the peak so far, which is only an upper bound."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except FileNotFoundError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.mark.slow
async def test_memory_stays_flat_while_streaming(emulator: Emulator, clock: VirtualClock) -> None:
    """From 12,000 to 36,000 distinct keys, live objects and resident memory do not grow with the keys."""
    n = 36_000
    for i in range(0, n, 50):  # one key in 50 has a profile, the rest are 401s: each one a request
        emulator.add_key(key=f"dpct_flat{i:024d}")
    keys = (f"dpct_flat{i:024d}" for i in range(n))
    marks: dict[int, tuple[int, int]] = {}
    async with AccountClient(base_url=emulator.url, clock=clock) as client:
        summary = BalanceSummary()
        async with client.balances(keys, concurrency=100) as stream:
            async for result in stream:
                summary.add(result)
                if summary.total % 1000 == 0:
                    emulator.reset_stats()  # the emulator's own request log is not under test
                if summary.total in (12_000, n):
                    gc.collect()
                    marks[summary.total] = (len(gc.get_objects()), _resident_bytes())
    assert (summary.ok, summary.auth_failed) == (n // 50, n - n // 50)
    (objects_before, rss_before), (objects_after, rss_after) = marks[12_000], marks[n]
    # 24,000 more keys: a per-key leak of even one object each would show as +24,000.
    assert objects_after - objects_before < 2_400
    assert rss_after - rss_before < 8 * 1024 * 1024
