"""Which waits a `VirtualClock` makes virtual, and which stay real (accountapi/_clock.py
says so; each test here shows one side over real sockets)."""

from __future__ import annotations

import asyncio
import time

import pytest

from accountapi import (
    AccountClient,
    APITimeoutError,
    RateLimitError,
    ServiceUnavailableError,
    Timeout,
)
from accountapi.testing import Emulator, Fault, VirtualClock


async def test_retry_waits_and_retry_after_are_virtual(emulator: Emulator) -> None:
    """A 503 asking for 30 s and then a success: the call ends at once, the 30 s spent
    only on the virtual clock."""
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503, retry_after=30)])
    clock = VirtualClock()
    started = time.monotonic()
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        await client.account.profile()
    assert clock.sleeps == [pytest.approx(30.001)]
    assert time.monotonic() - started < 10  # not the 30 s asked for


async def test_the_memory_gates_cool_down_is_virtual(emulator: Emulator) -> None:
    """After a 429 with Retry-After: 20 the next call for the key waits out the
    cool-down on the clock, not in real time."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(20)])
    clock = VirtualClock()
    started = time.monotonic()
    async with AccountClient(key, base_url=emulator.url, clock=clock, max_retries=0) as client:
        with pytest.raises(RateLimitError):
            await client.account.profile()
        await client.account.profile()  # queued behind the key's cool-down
    assert clock.sleeps  # the cool-down, slept on the virtual clock
    assert sum(clock.sleeps) >= 19.9
    assert time.monotonic() - started < 10


async def test_the_whole_calls_deadline_counts_virtual_waits(emulator: Emulator) -> None:
    """Timeout.total is spent by virtual waits: 503s asking for 4 s each stop after the
    waits that fit in a 10 s deadline, though no real time passed."""
    key = emulator.add_key(fault=Fault.status(503, retry_after=4))
    clock = VirtualClock()
    async with AccountClient(
        key, base_url=emulator.url, clock=clock, timeout=Timeout(total=10), max_retries=10
    ) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.account.profile()
    assert len(clock.sleeps) == 2  # 4 + 4 fit in 10; a third 4 would not
    assert info.value.attempts == 3


async def test_an_attempts_time_limit_is_real(emulator: Emulator) -> None:
    """A service that takes 0.5 s against a 0.2 s attempt limit: cut after real time,
    and nothing of it on the virtual clock."""
    key = emulator.add_key(latency=0.5)
    clock = VirtualClock()
    started = time.monotonic()
    async with AccountClient(
        key,
        base_url=emulator.url,
        clock=clock,
        timeout=Timeout(attempt=0.2, total=5),
        max_retries=0,
    ) as client:
        with pytest.raises(APITimeoutError):
            await client.account.profile()
    assert time.monotonic() - started >= 0.19
    assert clock.sleeps == []


async def test_the_wait_for_a_keys_slot_is_real(emulator: Emulator) -> None:
    """Ten calls hold the key's ten slots for a real 0.5 s; an eleventh with a 0.2 s
    deadline gives up after real time (the virtual clock cannot free a slot)."""
    key = emulator.add_key(latency=0.5)
    clock = VirtualClock()
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        holders = [asyncio.create_task(client.account.profile()) for _ in range(10)]
        await emulator.wait_for_attempts(key, 10)
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="no request slot"):
            await client.account.profile(timeout=0.2)
        assert time.monotonic() - started >= 0.19
        await asyncio.gather(*holders)
    assert clock.sleeps == []
