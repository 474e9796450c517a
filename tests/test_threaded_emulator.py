"""ThreadedEmulator: the emulator on its own thread, for sync tests and blocking test clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import urllib.error
import urllib.request

import pytest

from accountapi import AccountClient, SyncAccountClient
from accountapi._clock import SystemClock, default_clock, override_default_clock
from accountapi.testing import Emulator, Fault, ThreadedEmulator, VirtualClock


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "accountapi-emulator"]


def _get_profile(url: str, key: str) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - the emulator's http://127.0.0.1 URL
        f"{url}/v1/account/profile", headers={"Authorization": f"Bearer {key}"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - same URL
        body: dict[str, object] = json.load(answer)
    return body


def _block(emu: ThreadedEmulator, release: threading.Event) -> threading.Thread:
    """Occupy the emulator's thread until ``release`` is set; returns once it is occupied."""
    entered = threading.Event()

    def hold(_: Emulator) -> None:
        entered.set()
        release.wait(5)

    def occupy() -> None:
        with contextlib.suppress(TimeoutError):  # this caller's own wait is bounded too
            emu.call(hold)

    blocker = threading.Thread(target=occupy)
    blocker.start()
    assert entered.wait(5)
    return blocker


def test_a_plain_blocking_caller_gets_answers() -> None:
    """A sync caller with no event loop at all is answered: the emulator serves from its thread."""
    with ThreadedEmulator() as emu:
        key = emu.add_key({"balance_eur": "4.000000"})
        assert _get_profile(emu.url, key)["user"] == {**emu.profile(key)}
        assert emu.attempts(key) == 1
        assert [record.status for record in emu.records] == [200]


def test_stop_leaves_no_thread_socket_or_listener() -> None:
    """After stop() the thread is joined, every file descriptor it opened is closed and the
    port refuses connections."""
    before = _open_fds()
    emu = ThreadedEmulator()
    emu.start()
    port = int(emu.url.rsplit(":", 1)[1])
    _get_profile(emu.url, emu.add_key())
    assert len(_emulator_threads()) == 1
    emu.stop()
    assert _emulator_threads() == []
    assert _open_fds() == before
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass
    emu.stop()  # idempotent


def test_a_failed_start_raises_and_leaves_no_thread() -> None:
    """A port already in use is the caller's error, and no thread is left behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        emu = ThreadedEmulator(port=taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"):
            emu.start()
    assert _emulator_threads() == []
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.url


def test_a_call_waits_at_most_call_timeout() -> None:
    """A call the emulator's thread cannot take up in time raises TimeoutError, not a hang."""
    release = threading.Event()
    with ThreadedEmulator(call_timeout=0.2) as emu:
        blocker = _block(emu, release)
        try:
            with pytest.raises(TimeoutError, match=r"did not answer within 0\.2 s"):
                emu.add_key()
        finally:
            release.set()
            blocker.join(5)
        assert emu.add_key()  # answering again once its thread is free


def test_stop_raises_when_the_thread_does_not_end_in_time() -> None:
    """stop() waits at most stop_timeout for the thread, then says so instead of hanging."""
    release = threading.Event()
    emu = ThreadedEmulator(stop_timeout=0.2)
    emu.start()
    blocker = _block(emu, release)
    try:
        with pytest.raises(RuntimeError, match=r"did not stop within 0\.2 s"):
            emu.stop()
    finally:
        release.set()
        blocker.join(5)
    for thread in _emulator_threads():
        thread.join(5)
    assert _emulator_threads() == []


def test_a_call_from_the_emulator_thread_runs_directly() -> None:
    """call() on the emulator's own thread runs at once instead of waiting on itself."""
    with ThreadedEmulator(call_timeout=1.0) as emu:
        key = emu.add_key()
        assert emu.call(lambda _: emu.attempts(key)) == 0


def test_profile_is_a_copy_and_call_edits_the_live_one() -> None:
    """profile() hands the test a copy; a change made through call() is what is served."""
    with ThreadedEmulator() as emu:
        key = emu.add_key({"balance_eur": "1.000000"})
        emu.profile(key)["balance_eur"] = "9.000000"
        assert _get_profile(emu.url, key)["user"]["balance_eur"] == "1.000000"  # type: ignore[index]
        emu.call(lambda e: e.profile(key).update(balance_eur="2.000000"))
        assert _get_profile(emu.url, key)["user"]["balance_eur"] == "2.000000"  # type: ignore[index]


def test_sync_client_retries_scripted_faults_against_it() -> None:
    """SyncAccountClient in a plain function: a 503 and a 429 retried, waits virtual."""
    clock = VirtualClock()
    with ThreadedEmulator() as emu:
        key = emu.add_key({"balance_eur": "3.000000"})
        emu.script(key, iter([Fault.status(503), Fault.rate_limited(7)]))
        with SyncAccountClient(key, base_url=emu.url, clock=clock) as client:
            assert str(client.account.profile().balance_eur) == "3.000000"
        assert emu.attempts(key) == 3
        assert emu.max_in_flight(key) == 1
        assert emu.limit_rejections == 0
        emu.reset_stats()
        assert emu.records == []
    assert clock.sleeps[-1] >= 7


async def test_an_async_test_awaits_it_without_blocking_its_loop() -> None:
    """wait_for_attempts is awaited on the test's loop while the emulator counts on its own."""
    with ThreadedEmulator() as emu:
        key = emu.add_key()
        async with AccountClient(key, base_url=emu.url) as client:
            await client.account.profile()
            await emu.wait_for_attempts(key, 1, timeout=1.0)
        with pytest.raises(TimeoutError):
            await emu.wait_for_attempts(key, 2, timeout=0.05)


def test_the_forwarded_setters_reach_the_emulator() -> None:
    """set_fault_mix and set_latency change what the emulator on the other thread serves."""
    with ThreadedEmulator() as emu:
        key = emu.add_key()
        emu.set_latency(0.0)
        emu.set_fault_mix([(1.0, Fault.status(500))], seed=1)
        with pytest.raises(urllib.error.HTTPError, match="500"):
            _get_profile(emu.url, key)
        emu.set_fault_mix([])
        assert _get_profile(emu.url, key)["user"]


def test_repr_says_where_it_serves() -> None:
    """The repr names the URL, or that it is not started; never a key."""
    emu = ThreadedEmulator()
    assert repr(emu) == "<ThreadedEmulator not started>"
    with emu:
        key = emu.add_key()
        assert repr(emu) == f"<ThreadedEmulator {emu.url}>"
        assert key not in repr(emu)
    with pytest.raises(RuntimeError, match="already running"), emu, emu:
        pass


def test_the_default_clock_is_the_system_clock_unless_overridden() -> None:
    """default_clock() is SystemClock; inside override_default_clock it is the given clock,
    and the previous one is back after the block, also when the block raises."""
    virtual, inner = VirtualClock(), VirtualClock()

    def a_failing_test() -> None:
        with override_default_clock(virtual):
            assert default_clock() is virtual
            with override_default_clock(inner):
                assert default_clock() is inner
            assert default_clock() is virtual
            raise ZeroDivisionError

    assert isinstance(default_clock(), SystemClock)
    with pytest.raises(ZeroDivisionError):
        a_failing_test()
    assert isinstance(default_clock(), SystemClock)


async def test_a_client_built_without_clock_uses_the_overridden_one(emulator: Emulator) -> None:
    """AccountClient() consults the default clock at construction: a 30 s Retry-After is
    recorded on the override, not slept."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(30)])
    clock = VirtualClock()
    with override_default_clock(clock):
        client = AccountClient(key, base_url=emulator.url)
    async with client:
        await client.account.profile()
    assert clock.sleeps[-1] >= 30
    assert emulator.attempts(key) == 2


def test_a_bad_option_is_raised_by_start_at_once() -> None:
    """An option the Emulator refuses is start()'s ValueError at once, not a TimeoutError
    after call_timeout, and no thread is left."""
    emu = ThreadedEmulator(latency=-1, call_timeout=5.0)
    with pytest.raises(ValueError, match="latency must be"):
        emu.start()
    assert _emulator_threads() == []


class _SlowlyCheckedLimit(int):
    """A per_key_limit whose check takes 0.3 s: an emulator that starts slower than that."""

    def __lt__(self, other: int) -> bool:
        threading.Event().wait(0.3)
        return int(self) < other


def test_a_start_slower_than_call_timeout_leaves_no_thread_or_socket() -> None:
    """A start that outlasts call_timeout raises TimeoutError, and the emulator it was
    starting closes itself: no thread, no file descriptor, nothing left to stop."""
    before = _open_fds()
    emu = ThreadedEmulator(per_key_limit=_SlowlyCheckedLimit(10), call_timeout=0.05)
    with pytest.raises(TimeoutError, match=r"did not start within 0\.05 s"):
        emu.start()
    assert _emulator_threads() == []
    assert _open_fds() == before
    assert repr(emu) == "<ThreadedEmulator not started>"


def _keep_calling(
    emu: ThreadedEmulator, key: str, answered: threading.Event, outcomes: list[str]
) -> None:
    """Call the emulator until a call fails; record how it failed."""
    while True:
        try:
            emu.attempts(key)
        except Exception as exc:  # every outcome is recorded and checked
            outcomes.append(f"{type(exc).__name__}: {exc}")
            return
        answered.set()


def test_calls_racing_stop_get_the_not_running_error_at_once() -> None:
    """Calls from other threads while stop() runs are answered or get "not running" at
    once: none waits for call_timeout, none sees a closed loop or a cancellation."""
    outcomes: list[str] = []
    for _ in range(10):
        emu = ThreadedEmulator(call_timeout=2.0)
        emu.start()
        key = emu.add_key()
        answered = [threading.Event() for _ in range(4)]
        callers = [
            threading.Thread(target=_keep_calling, args=(emu, key, done, outcomes))
            for done in answered
        ]
        for caller in callers:
            caller.start()
        assert all(done.wait(5) for done in answered)
        emu.stop()
        for caller in callers:
            caller.join(5)
    assert set(outcomes) == {"RuntimeError: the emulator is not running; use `with` or start()"}
    assert len(outcomes) == 40


async def test_a_wait_pending_at_stop_gets_the_not_running_error() -> None:
    """wait_for_attempts still waiting when the emulator stops raises "not running", not
    a bare CancelledError."""
    emu = ThreadedEmulator()
    emu.start()
    key = emu.add_key()

    async def stop() -> None:
        await asyncio.to_thread(emu.stop)

    waited, _ = await asyncio.gather(
        emu.wait_for_attempts(key, 1, timeout=30.0), stop(), return_exceptions=True
    )
    assert isinstance(waited, RuntimeError)
    assert "not running" in str(waited)


def test_stop_from_the_emulators_own_thread_stops_it() -> None:
    """stop() inside call() does not try to join its own thread: the emulator is stopped
    at once for every caller, and its thread ends once that call returns."""
    before = _open_fds()
    emu = ThreadedEmulator()
    emu.start()
    emu.call(lambda _: emu.stop())
    assert repr(emu) == "<ThreadedEmulator not started>"
    with pytest.raises(RuntimeError, match="not running"):
        emu.add_key()
    for thread in _emulator_threads():
        thread.join(5)
    assert _emulator_threads() == []
    assert _open_fds() == before
    emu.start()  # and it can be started again
    assert emu.add_key()
    emu.stop()
