"""The per-key gate: never more than the service's limit in flight, one cool-down per key."""

from __future__ import annotations

import asyncio

import pytest

from accountapi import (
    AccountAPIError,
    AccountClient,
    APITimeoutError,
    ClientStateError,
    ConfigurationError,
    Limits,
    RateLimitError,
)
from accountapi.gates import GateTimeout, KeyCoolingDown, MemoryKeyGate
from accountapi.testing import Emulator, Fault, VirtualClock


async def test_fifty_concurrent_calls_on_one_key_see_no_429(emulator: Emulator) -> None:
    """A burst of 50 calls with one key stays at 10 in flight and draws zero 429s."""
    key = emulator.add_key(latency=0.05)
    async with AccountClient(key, base_url=emulator.url, max_retries=0) as client:
        profiles = await asyncio.gather(*(client.account.profile() for _ in range(50)))
    assert len(profiles) == 50
    assert emulator.limit_rejections == 0
    assert emulator.max_in_flight(key) == 10
    assert emulator.attempts(key) == 50


async def test_without_the_gate_the_service_would_answer_429(emulator: Emulator) -> None:
    """The same burst with the per-key limit lifted does draw 429s: the gate is what prevents them."""
    key = emulator.add_key(latency=0.05)
    async with AccountClient(
        key, base_url=emulator.url, max_retries=0, limits=Limits(per_key=None)
    ) as client:
        results = await asyncio.gather(
            *(client.account.profile() for _ in range(50)), return_exceptions=True
        )
    assert any(isinstance(r, RateLimitError) for r in results)
    assert emulator.limit_rejections > 0


async def test_per_key_limit_is_configurable(emulator: Emulator) -> None:
    """Limits(per_key=3) keeps three calls in flight for the key."""
    key = emulator.add_key(latency=0.05)
    async with AccountClient(key, base_url=emulator.url, limits=Limits(per_key=3)) as client:
        await asyncio.gather(*(client.account.profile() for _ in range(12)))
    assert emulator.max_in_flight(key) == 3


async def test_keys_are_limited_independently(emulator: Emulator) -> None:
    """Each key gets its own ten slots on the one shared pool."""
    keys = [emulator.add_key(latency=0.05) for _ in range(3)]
    async with AccountClient(base_url=emulator.url) as client:
        await asyncio.gather(*(client.account.profile(api_key=k) for k in keys for _ in range(15)))
    assert [emulator.max_in_flight(k) for k in keys] == [10, 10, 10]
    assert emulator.limit_rejections == 0


async def test_a_429_pauses_the_keys_queued_calls(emulator: Emulator) -> None:
    """After a 429 with Retry-After: 1, no further request for that key reaches the server for a second."""
    key = emulator.add_key(latency=0.3)
    emulator.script(key, [Fault.rate_limited(1)])
    async with AccountClient(key, base_url=emulator.url) as client:
        await asyncio.gather(*(client.account.profile() for _ in range(25)))
    records = [r for r in emulator.records if r.path == "/v1/account/profile"]
    rejected = next(r for r in records if r.status == 429)
    first_wave = [r for r in records if r.t_start - rejected.t_start < 0.25]
    later = [r for r in records if r.t_start - rejected.t_start >= 0.25]
    assert len(first_wave) == 10  # the ten admitted before the 429 came back
    assert len(later) == 16  # 15 queued calls + the retry of the rejected one
    assert all(r.t_start - rejected.t_start >= 1.0 for r in later)
    assert emulator.limit_rejections == 0


async def test_cool_down_is_per_key(emulator: Emulator, clock: VirtualClock) -> None:
    """A key cooling down does not delay another key."""
    hot, cold = emulator.add_key(), emulator.add_key()
    emulator.script(hot, [Fault.rate_limited(5)])
    async with AccountClient(base_url=emulator.url, clock=clock) as client:
        await client.account.profile(api_key=hot)
        assert len(clock.sleeps) == 1
        await client.key_gate.cool_down(hot, 30)
        await client.account.profile(api_key=cold)
    assert len(clock.sleeps) == 1


async def test_gate_queue_is_fifo_and_hands_slots_over() -> None:
    """Waiters get slots in arrival order; a released slot goes straight to the next waiter."""
    gate = MemoryKeyGate(1)
    order: list[int] = []
    await gate.acquire("k", None)

    async def waiter(n: int) -> None:
        await gate.acquire("k", None)
        order.append(n)
        gate.release("k")

    tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0)
    assert await gate.in_flight("k") == 1
    gate.release("k")
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert len(gate) == 0  # idle keys are forgotten: memory stays flat


async def test_cancelled_waiter_does_not_leak_its_slot() -> None:
    """A waiter cancelled in the queue, or just after being handed a slot, gives it back."""
    gate = MemoryKeyGate(1)
    await gate.acquire("k", None)
    first = asyncio.create_task(gate.acquire("k", None))
    second = asyncio.create_task(gate.acquire("k", None))
    await asyncio.sleep(0)
    first.cancel()
    gate.release("k")  # hands the slot to `first`, which is being cancelled
    with pytest.raises(asyncio.CancelledError):
        await first
    await second  # so the slot reached `second`
    assert await gate.in_flight("k") == 1
    gate.release("k")
    assert len(gate) == 0


async def test_waiting_for_a_slot_times_out() -> None:
    """No slot within the time left raises GateTimeout and leaves the queue clean."""
    gate = MemoryKeyGate(1)
    await gate.acquire("k", None)
    with pytest.raises(GateTimeout):
        await gate.acquire("k", 0.01)
    gate.release("k")
    assert len(gate) == 0


async def test_a_shorter_deadline_queued_later_still_expires_on_time() -> None:
    """A waiter with a short deadline behind one with a long deadline times out on its own."""
    gate = MemoryKeyGate(1)
    await gate.acquire("k", None)
    patient = asyncio.create_task(gate.acquire("k", 30.0))
    await asyncio.sleep(0)  # let it queue first
    async with asyncio.timeout(2):  # bounds the test if the short deadline were missed
        with pytest.raises(GateTimeout):
            await gate.acquire("k", 0.05)
    assert not patient.done()
    gate.release("k")  # hands the slot to the patient waiter
    await patient
    gate.release("k")
    assert len(gate) == 0


async def test_cool_down_is_waited_out_without_spinning() -> None:
    """Callers arriving during a cool-down are admitted only once it has passed, with no busy loop."""
    clock = VirtualClock()
    gate = MemoryKeyGate(10, clock=clock)
    await gate.cool_down("k", 2.0)
    # Each caller waits out the rest of the cool-down once, concurrently (each task's
    # virtual time is its own, as real waits overlap), never in a loop of short sleeps.
    await asyncio.gather(*(gate.acquire("k", None) for _ in range(3)))
    assert clock.sleeps == [pytest.approx(2.0, abs=0.01)] * 3
    for _ in range(3):
        gate.release("k")
    assert len(gate) == 0


async def test_cool_down_longer_than_the_time_left_fails_fast() -> None:
    """A cool-down that would outlast the caller's deadline raises instead of sleeping."""
    clock = VirtualClock()
    gate = MemoryKeyGate(10, clock=clock)
    await gate.cool_down("k", 30.0)
    with pytest.raises(GateTimeout):
        await gate.acquire("k", 5.0)
    assert clock.sleeps == []
    assert await gate.in_flight("k") == 0


def test_gate_limit_validated() -> None:
    """A per-key limit below 1 is a configuration error."""
    with pytest.raises(ConfigurationError):
        MemoryKeyGate(0)


async def test_slots_counted_plainly_keep_their_count_when_a_key_needs_more() -> None:
    """A key whose calls only hold slots is a bare count; queueing behind it or a
    cool-down turns it into full state with the same count, and releasing every slot
    leaves nothing behind, whichever form the key was in."""
    clock = VirtualClock()
    gate = MemoryKeyGate(3, clock=clock)
    for _ in range(3):
        await gate.acquire("k", None)
    assert await gate.in_flight("k") == 3
    assert await gate.in_flight("other") == 0
    queued = asyncio.create_task(gate.acquire("k", None))
    await asyncio.sleep(0)
    assert not queued.done()  # the limit held across the change of form
    gate.release("k")  # the freed slot goes to the queued call, not back to the count
    await queued
    assert await gate.in_flight("k") == 3
    for _ in range(3):
        gate.release("k")
    assert len(gate) == 0

    await gate.acquire("k", None)
    await gate.acquire("k", None)
    await gate.cool_down("k", 1.0)  # a 429 while two calls hold slots
    assert await gate.in_flight("k") == 2
    late = asyncio.create_task(gate.acquire("k", None))
    gate.release("k")
    gate.release("k")
    await late  # admitted only after the cool-down
    assert clock.slept == pytest.approx(1.0, abs=0.01)
    assert await gate.in_flight("k") == 1
    gate.release("k")
    assert len(gate) == 0
    gate.release("k")  # a release with nothing held is ignored in either form
    assert len(gate) == 0


class _RefusingGate(MemoryKeyGate):
    """A gate of a user's own whose ``acquire`` refuses every call with ``refusal``."""

    def __init__(self, refusal: AccountAPIError) -> None:
        super().__init__()
        self.refusal = refusal

    async def acquire(
        self, key: str, timeout: float | None, *, max_cool_down: float | None = None
    ) -> None:
        raise self.refusal


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (KeyCoolingDown(7.5), RateLimitError),
        (GateTimeout("no slot"), APITimeoutError),
        (ClientStateError("the gate is closed"), ClientStateError),
    ],
    ids=["KeyCoolingDown", "GateTimeout", "its own AccountAPIError"],
)
async def test_a_gate_s_refusal_becomes_the_documented_sdk_error(
    emulator: Emulator,
    key: str,
    clock: VirtualClock,
    refusal: AccountAPIError,
    expected: type[AccountAPIError],
) -> None:
    """GateTimeout and KeyCoolingDown are AccountAPIErrors now, yet the client still turns
    KeyCoolingDown into RateLimitError (its retry_after kept, and waited before each
    retry) and GateTimeout into APITimeoutError, and passes a gate's other
    AccountAPIError on; nothing is sent."""
    gate = _RefusingGate(refusal)
    async with AccountClient(key, base_url=emulator.url, key_gate=gate, clock=clock) as c:
        with pytest.raises(AccountAPIError) as info:
            await c.account.profile()
    if isinstance(refusal, KeyCoolingDown):  # a 429's Retry-After: honoured, on the clock
        assert clock.sleeps
        assert all(wait >= 7.5 for wait in clock.sleeps)
    else:
        assert clock.sleeps == []  # not retried
    assert type(info.value) is expected
    assert info.value.attempts == 0
    if isinstance(refusal, KeyCoolingDown):
        assert isinstance(info.value, RateLimitError)
        assert (info.value.status, info.value.retry_after) == (429, 7.5)
    if isinstance(refusal, GateTimeout) and not isinstance(refusal, KeyCoolingDown):
        assert isinstance(info.value, APITimeoutError)
        assert info.value.request_sent is False
    assert emulator.attempts(key) == 0


def test_gate_signals_are_account_api_errors_and_still_timeout_errors() -> None:
    """`except AccountAPIError` catches what a gate raises; `except TimeoutError` still does."""
    for signal in (GateTimeout("no slot"), KeyCoolingDown(1.0)):
        assert isinstance(signal, AccountAPIError)
        assert isinstance(signal, TimeoutError)
        assert signal.attempts == 0
    assert issubclass(KeyCoolingDown, GateTimeout)
