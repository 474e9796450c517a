"""SyncAccountClient: the async client driven from plain threads, against the emulator.

The emulator runs on the test's event loop; each blocking call runs in a worker thread
(``asyncio.to_thread``), as a Django view or a Celery task would call it.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from accountapi import (
    AuthenticationError,
    ClientStateError,
    ConfigurationError,
    MalformedAPIKeyError,
    Profile,
    SyncAccountClient,
)
from accountapi.testing import Emulator, Fault, VirtualClock


async def test_profile_dismiss_and_errors_are_the_async_ones(emulator: Emulator) -> None:
    """Same Profile, same exception classes, same exact money."""
    key = emulator.add_key({"balance_eur": "7.125000", "pending_credit_notice": True})

    def work() -> Profile:
        with SyncAccountClient(key, base_url=emulator.url) as client:
            profile = client.account.profile()
            client.account.dismiss_notifications()
            with pytest.raises(AuthenticationError):
                client.account.profile(api_key="dpct_" + "u" * 32)
            with pytest.raises(MalformedAPIKeyError):
                client.account.profile(api_key="not a key")
            return profile

    profile = await asyncio.to_thread(work)
    assert profile.balance_eur == Decimal("7.125000")
    assert emulator.profile(key)["pending_credit_notice"] is False


async def test_80_calls_from_8_threads_share_one_limit(emulator: Emulator) -> None:
    """Eight threads, ten calls each, one key: all succeed, never more than 10 in flight."""
    key = emulator.add_key(latency=0.01)
    client = SyncAccountClient(key, base_url=emulator.url)
    failures: list[BaseException] = []
    results: list[Profile] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(10):
            try:
                profile = client.account.profile()
            except BaseException as exc:
                with lock:
                    failures.append(exc)
            else:
                with lock:
                    results.append(profile)

    def run_all() -> None:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        client.close()

    await asyncio.to_thread(run_all)
    assert failures == []
    assert len(results) == 80
    assert emulator.attempts(key) == 80
    assert emulator.max_in_flight(key) <= 10
    assert emulator.limit_rejections == 0


async def test_balances_is_an_iterator_of_one_result_per_key(emulator: Emulator) -> None:
    """balances() yields a result per key; leaving early cancels the rest."""
    keys = [emulator.add_key() for _ in range(20)] + ["dpct_" + "u" * 32]

    def work() -> tuple[int, int, int]:
        with SyncAccountClient(base_url=emulator.url) as client:
            results = list(client.balances(keys, concurrency=5))
            first_three = 0
            for _ in client.balances(keys, concurrency=2):
                first_three += 1
                if first_three == 3:
                    break
            return len(results), sum(r.ok for r in results), first_three

    total, ok, early = await asyncio.to_thread(work)
    assert (total, ok, early) == (21, 20, 3)


async def test_called_from_a_running_loop_is_a_clear_error(emulator: Emulator) -> None:
    """Inside async code the blocking client refuses (it would stall the loop)."""
    key = emulator.add_key()
    client = SyncAccountClient(key, base_url=emulator.url)
    with pytest.raises(ClientStateError, match="running event loop"):
        client.account.profile()
    with pytest.raises(ClientStateError, match="running event loop"):
        client.balances([key])
    assert emulator.records == []
    await asyncio.to_thread(client.close)


async def test_close_is_idempotent_and_final(emulator: Emulator) -> None:
    key = emulator.add_key()

    def work() -> None:
        client = SyncAccountClient(key, base_url=emulator.url)
        client.account.profile()
        client.close()
        client.close()
        with pytest.raises(ClientStateError, match="closed"):
            client.account.profile()

    await asyncio.to_thread(work)
    assert not [t for t in threading.enumerate() if t.name == "accountapi-sync"]


async def test_retries_use_the_clock_given(emulator: Emulator) -> None:
    """Constructor options pass through: a virtual clock makes a 429 wait instant."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(30)])
    clock = VirtualClock()

    def work() -> Profile:
        with SyncAccountClient(key, base_url=emulator.url, clock=clock) as client:
            return client.account.profile()

    assert (await asyncio.to_thread(work)).email
    assert clock.sleeps[-1] >= 30


def test_a_session_is_refused() -> None:
    """An aiohttp session belongs to another loop: refused with a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="session"):
        SyncAccountClient("dpct_" + "a" * 32, session=object())  # type: ignore[arg-type]


def test_the_constructor_takes_the_async_clients_options_by_name() -> None:
    """SyncAccountClient's parameters are AccountClient's, typed and keyword-only the
    same way (session= is accepted only to be refused clearly)."""
    import inspect

    from accountapi import AccountClient

    sync = inspect.signature(SyncAccountClient)
    async_ = inspect.signature(AccountClient)
    assert list(sync.parameters) == list(async_.parameters)
    for name, parameter in async_.parameters.items():
        if name == "session":
            continue
        mirrored = sync.parameters[name]
        assert (mirrored.kind, mirrored.default) == (parameter.kind, parameter.default), name
        assert str(mirrored.annotation) == str(parameter.annotation), name
