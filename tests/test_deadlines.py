"""Attempt deadlines: one shared timer cancels overdue attempts, with asyncio.timeout's rules.

The client no longer gives aiohttp a ``total`` timeout per request; these tests pin what
replaced it: a slow attempt still ends as APITimeoutError on time, a caller's own
cancellation or timeout is never mistaken for ours, and the task's cancel count is left
as it was (so a TaskGroup around the call is not confused).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from accountapi import AccountClient, APITimeoutError, Timeout
from accountapi._http._deadlines import AttemptDeadlines
from accountapi._http._transport import request_headers
from accountapi._keys import Credential
from accountapi.testing import Emulator, Fault


async def test_a_slow_attempt_times_out_and_leaves_the_task_uncancelled(
    emulator: Emulator, key: str
) -> None:
    """The deadline's cancel request is withdrawn: the task's cancelling() is back to 0."""
    emulator.script(key, [Fault.delay(5)])
    async with AccountClient(key, base_url=emulator.url, timeout=Timeout(attempt=0.2)) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await client.account.profile()
        elapsed = time.monotonic() - started
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        assert len(client._transport._deadlines) == 0
        # The same task goes on to make a normal call.
        assert (await client.account.profile()).id
    assert info.value.request_sent is True
    assert 0.2 <= elapsed < 2.0


async def test_a_short_deadline_queued_after_a_long_one_fires_on_time(
    emulator: Emulator,
) -> None:
    """One timer serves all attempts: it re-arms for a later, earlier-expiring attempt."""
    slow, quick = emulator.add_key(), emulator.add_key()
    emulator.script(slow, [Fault.delay(1.0)])
    emulator.script(quick, [Fault.delay(5)])
    async with AccountClient(base_url=emulator.url, timeout=Timeout(attempt=3)) as client:
        long_call = asyncio.create_task(client.account.profile(api_key=slow))
        await emulator.wait_for_attempts(slow, 1)
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await client.account.profile(api_key=quick, timeout=Timeout(attempt=0.2))
        assert time.monotonic() - started < 1.0
        profile = await long_call  # the longer deadline was not cut short
    assert profile.id


async def test_the_callers_own_timeout_is_not_reported_as_ours(
    emulator: Emulator, key: str
) -> None:
    """asyncio.timeout around a call raises TimeoutError, not APITimeoutError."""
    emulator.script(key, [Fault.delay(5)])
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(TimeoutError) as info:
            async with asyncio.timeout(0.2):
                await client.account.profile()
    assert not isinstance(info.value, APITimeoutError)


async def test_cancelling_the_caller_mid_attempt_cancels(emulator: Emulator, key: str) -> None:
    emulator.script(key, [Fault.delay(5)])
    async with AccountClient(key, base_url=emulator.url) as client:
        call = asyncio.create_task(client.account.profile())
        await emulator.wait_for_attempts(key, 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert len(client._transport._deadlines) == 0


async def test_a_cancel_racing_the_deadline_stays_a_cancel() -> None:
    """Deadline passed and the task cancelled by someone else too: the cancel wins."""
    deadlines = AttemptDeadlines()
    outcome: list[str] = []
    entered = asyncio.Event()

    async def attempt() -> None:
        task = _current()
        deadlines.enter(task, 0.05)
        entered.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            outcome.append("timeout" if deadlines.expired(task) else "cancelled")
            raise
        finally:
            deadlines.leave(task)

    task = asyncio.create_task(attempt())
    await entered.wait()
    # Someone else cancels the task just after its deadline. Blocking the loop past both
    # moments makes them due in the same iteration, deadline first, before the task runs.
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + 0.06, task.cancel)
    time.sleep(0.1)  # noqa: ASYNC251 - deliberately holds the loop to line up the race
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]
    assert len(deadlines) == 0


async def test_outside_a_task_the_attempt_is_timed_by_aiohttp(emulator: Emulator) -> None:
    """A request with no task to cancel (task=None: the call runs outside any task)
    registers nothing; aiohttp's own timeout cuts the stalled attempt instead."""
    key = emulator.add_key()
    emulator.script(key, [Fault.delay(3)])
    async with AccountClient(key, base_url=emulator.url) as client:
        transport = client._transport
        credential = Credential(key).check()
        credential.headers = request_headers(credential.value, ())
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            await transport.request(
                transport.session(),
                "GET",
                transport.url("/v1/account/profile"),
                credential,
                Timeout(attempt=0.2),
                None,
                None,
            )
        assert time.monotonic() - started < 2.0
        assert len(transport._deadlines) == 0


async def test_close_disarms_the_timer() -> None:
    deadlines = AttemptDeadlines()
    task = _current()
    deadlines.enter(task, 0.05)
    deadlines.close()
    assert len(deadlines) == 0
    # Had the timer stayed armed, it would cancel this task within 0.05 s.
    await asyncio.sleep(0.15)
    assert task.cancelling() == 0


async def test_many_attempts_share_the_timer_and_only_the_slow_ones_time_out(
    emulator: Emulator,
) -> None:
    """200 concurrent calls, every tenth stalled: exactly those time out, the rest succeed."""
    keys = [emulator.add_key() for _ in range(20)]
    slow = set(keys[::10])
    for key in slow:
        emulator.script(key, [Fault.delay(3)] * 10)
    # An attempt limit of 1 s: far below the stall (3 s), and far above what an answered
    # call takes even on a loaded 2-core machine (0.3 s once cut a fast call short).
    async with AccountClient(
        base_url=emulator.url, timeout=Timeout(attempt=1.0), max_retries=0
    ) as client:

        async def call(key: str) -> str:
            try:
                await client.account.profile(api_key=key)
            except APITimeoutError:
                return "timeout"
            return "ok"

        started = time.monotonic()
        outcomes = await asyncio.gather(*(call(keys[i % 20]) for i in range(200)))
        elapsed = time.monotonic() - started
        assert len(client._transport._deadlines) == 0
    for i, outcome in enumerate(outcomes):
        assert outcome == ("timeout" if keys[i % 20] in slow else "ok"), i
    assert outcomes.count("timeout") == 20
    assert elapsed < 2.9  # the stalled ones were cut at ~1 s, not left for 3 s


async def test_a_deadline_cancel_turned_into_another_error_is_withdrawn() -> None:
    """If code under the attempt converts the CancelledError, leave() still uncancels."""
    deadlines = AttemptDeadlines()

    async def attempt() -> str:
        task = _current()
        deadlines.enter(task, 0.05)
        try:
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                raise ConnectionResetError("converted by a library") from None
            return "not cancelled"
        except ConnectionResetError:
            return f"converted, cancelling={task.cancelling()}"
        finally:
            deadlines.leave(task)

    task = asyncio.create_task(attempt())
    assert await task == "converted, cancelling=1"
    assert task.cancelling() == 0  # leave() withdrew the deadline's cancel request
    assert len(deadlines) == 0


def _current() -> asyncio.Task[object]:
    task = asyncio.current_task()
    assert task is not None
    return task
