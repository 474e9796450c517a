"""aclose() ends every call in progress, and a client answers only its own event loop.

Against the emulator on a loopback port. Waits the SDK asks for go through an injected
clock whose sleep never ends on its own, so the only way out of a retry's wait is the
close under test; each test is bounded by ``asyncio.timeout`` so a regression fails
instead of hanging.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from accountapi import AccountClient, ClientStateError, Limits, Profile
from accountapi.testing import Emulator, Fault


class EndlessSleepClock:
    """Real readings; a sleep that lasts until it is cancelled, announced as it starts."""

    def __init__(self) -> None:
        self.sleeping = asyncio.Event()
        self.asked: list[float] = []

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def time(self) -> float:
        import time

        return time.time()

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.sleeping.set()
        await asyncio.Event().wait()


async def test_aclose_ends_queued_on_the_wire_and_retry_waiting_calls(emulator: Emulator) -> None:
    """One call on the wire, one queued behind it for the key's only slot, one waiting out
    a 429's Retry-After: 20. aclose() ends all three with ClientStateError, each telling
    the requests it had sent, and every slot is given back."""
    busy = emulator.add_key(fault=Fault.delay(30))
    limited = emulator.add_key()
    emulator.script(limited, [Fault.rate_limited(20)])
    clock = EndlessSleepClock()
    client = AccountClient(
        base_url=emulator.url, clock=clock, limits=Limits(per_key=1), timeout=None
    )
    on_wire = asyncio.create_task(client.account.profile(api_key=busy))
    await emulator.wait_for_attempts(busy, 1)
    queued = asyncio.create_task(client.account.profile(api_key=busy))
    waiting = asyncio.create_task(client.account.profile(api_key=limited))
    await asyncio.wait_for(clock.sleeping.wait(), 5)
    await asyncio.sleep(0)  # the queued call reaches the gate's queue
    assert not queued.done()

    async with asyncio.timeout(5):
        await client.aclose()
        results = await asyncio.gather(on_wire, queued, waiting, return_exceptions=True)

    assert [type(r) for r in results] == [ClientStateError] * 3
    assert [r.attempts for r in results if isinstance(r, ClientStateError)] == [1, 0, 1]
    assert all(
        isinstance(r, ClientStateError) and "closed while this call" in str(r) for r in results
    )
    assert clock.asked[0] >= 20
    assert await client.key_gate.in_flight(busy) == 0
    assert await client.key_gate.in_flight(limited) == 0
    assert emulator.attempts(busy) == 1  # the queued call never sent anything
    assert client.closed


async def test_a_call_made_after_aclose_began_is_refused(emulator: Emulator) -> None:
    """While aclose() waits for ended calls to unwind, a new call is refused, not sent."""
    key = emulator.add_key(fault=Fault.delay(30))
    client = AccountClient(key, base_url=emulator.url, timeout=None)
    first = asyncio.create_task(client.account.profile())
    await emulator.wait_for_attempts(key, 1)
    async with asyncio.timeout(5):
        closing = asyncio.create_task(client.aclose())
        await asyncio.sleep(0)
        with pytest.raises(ClientStateError, match="closed"):
            await client.account.profile()
        await closing
        with pytest.raises(ClientStateError):
            await first
    assert emulator.attempts(key) == 1


async def test_the_callers_own_cancellation_stays_a_cancellation(emulator: Emulator) -> None:
    """A call cancelled by its caller while aclose() also ends it raises CancelledError:
    the caller's cancel is never swallowed into a ClientStateError."""
    key = emulator.add_key(fault=Fault.delay(30))
    client = AccountClient(key, base_url=emulator.url, timeout=None)
    call = asyncio.create_task(client.account.profile())
    await emulator.wait_for_attempts(key, 1)
    call.cancel()  # the caller's cancel, before aclose's
    async with asyncio.timeout(5):
        await client.aclose()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert call.cancelled()


async def test_aclose_leaves_an_idle_callers_task_alone(emulator: Emulator, key: str) -> None:
    """A task that finished its call before aclose() is not cancelled by it."""
    client = AccountClient(key, base_url=emulator.url)
    called, done = asyncio.Event(), asyncio.Event()

    async def caller() -> str:
        profile = await client.account.profile()
        called.set()
        await done.wait()  # still running, but no longer in a call
        return profile.email

    task = asyncio.create_task(caller())
    async with asyncio.timeout(5):
        await called.wait()
        await client.aclose()
        done.set()
        assert (await task).startswith("user-")


def test_a_second_event_loop_is_refused_at_once_even_while_the_key_is_busy() -> None:
    """A client busy on one loop (its key's only slot held) refuses a call from a second
    loop at once with ClientStateError, even with no deadline, instead of queueing in a
    gate that belongs to the first loop."""
    ready = threading.Event()
    box: dict[str, object] = {}

    def first_loop() -> None:
        async def main() -> None:
            async with Emulator() as emulator:
                key = emulator.add_key(fault=Fault.delay(30))
                client = AccountClient(
                    key, base_url=emulator.url, limits=Limits(per_key=1), timeout=None
                )
                call = asyncio.create_task(client.account.profile())
                await emulator.wait_for_attempts(key, 1)
                stop = asyncio.Event()
                box["client"], box["stop"] = client, stop
                box["loop"] = asyncio.get_running_loop()
                ready.set()
                await stop.wait()
                await client.aclose()
                box["first"] = await asyncio.gather(call, return_exceptions=True)

        asyncio.run(main())

    thread = threading.Thread(target=first_loop)
    thread.start()
    try:
        assert ready.wait(10)
        client = box["client"]
        assert isinstance(client, AccountClient)

        async def second() -> Profile:
            async with asyncio.timeout(5):
                return await client.account.profile(timeout=None)

        with pytest.raises(ClientStateError, match="another event loop"):
            asyncio.run(second())
    finally:
        if ready.is_set():
            loop, stop = box["loop"], box["stop"]
            assert isinstance(loop, asyncio.AbstractEventLoop)
            assert isinstance(stop, asyncio.Event)
            loop.call_soon_threadsafe(stop.set)
        thread.join(10)
    assert not thread.is_alive()
    first = box["first"]
    assert isinstance(first, list)
    assert [type(r) for r in first] == [ClientStateError]
