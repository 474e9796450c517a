"""SyncAccountClient and its balances() iterator under what a real process does to
them: a fork with an iterator half-read, an iterator dropped while the loop cannot
answer, two threads closing at once. Child processes are the witnesses, each bounded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time

from test_sync_lifecycle import _python

from accountapi import AccountClient, RetryEvent, SyncAccountClient
from accountapi._loop_thread import LoopThread
from accountapi.testing import Emulator, Fault

FORK_WITH_AN_ITERATOR = """
import gc, os, sys
from accountapi import ClientStateError, SyncAccountClient

url, keys = sys.argv[1], sys.argv[2:]
client = SyncAccountClient(base_url=url, timeout=3)
results = client.balances(iter(keys), concurrency=2)
assert next(results).ok
pid = os.fork()
if pid == 0:
    try:
        next(results)
    except ClientStateError as exc:
        print("child next:", type(exc).__name__, flush=True)
    else:
        print("child next: a result of the parent's stream", flush=True)
    del results
    gc.collect()
    answer = client.account.profile(api_key=keys[0])  # the client itself works here
    print("child call:", answer.id == client.account.profile(api_key=keys[0]).id, flush=True)
    sys.stdout.flush()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
print("parent:", sum(1 for r in results if r.ok) + 1)
client.close()
"""


async def test_a_forked_child_cannot_drive_the_parents_balances_iterator(
    emulator: Emulator,
) -> None:
    """A child forked while the parent iterates balances(): the iterator is the
    parent's (its stream, tasks and pool live on the parent's loop), so in the child
    next() raises ClientStateError and dropping it touches nothing of the parent's;
    the parent reads every result."""
    keys = [emulator.add_key() for _ in range(6)]
    code, out, err = await _python(FORK_WITH_AN_ITERATOR, emulator.url, *keys, dev=True)
    assert err == ""
    assert out.splitlines() == [
        "child next: ClientStateError",
        "child call: True",
        "child exit 0",
        "parent: 6",
    ], out
    assert code == 0
    assert sys.platform != "win32"


DROPPED_WHILE_THE_LOOP_IS_BLOCKED = """
import gc, sys, threading, time
from accountapi import SyncAccountClient
from accountapi.testing import VirtualClock

url, first, second = sys.argv[1:]
entered, release = threading.Event(), threading.Event()


def hook(event):  # a callback of the application's that blocks the loop
    entered.set()
    release.wait(30)


client = SyncAccountClient(base_url=url, timeout=2, on_retry=hook, clock=VirtualClock())
results = client.balances([first, second], concurrency=1)
assert next(results).ok
assert entered.wait(10)  # the second key's 503: its retry blocks the loop in the hook
started = time.monotonic()
del results  # never closed: collected, its finally asks the blocked loop to close it
gc.collect()
took = time.monotonic() - started
release.set()
client.close()
print("dropped", took < 7.0)
"""


async def test_an_iterator_dropped_while_the_loop_is_blocked_is_dropped_quietly(
    emulator: Emulator,
) -> None:
    """An abandoned balances() iterator collected while a callback blocks the loop:
    its clean-up waits its bound and goes on, with no 'Exception ignored' traceback
    (an APITimeoutError raised from the generator's finally)."""
    first, second = emulator.add_key(), emulator.add_key()
    emulator.script(second, [Fault.status(503)])
    code, out, err = await _python(
        DROPPED_WHILE_THE_LOOP_IS_BLOCKED, emulator.url, first, second
    )  # not -X dev: asyncio's debug mode rightly reports the hook that blocks the loop
    assert (code, out, err) == (0, "dropped True\n", "")


async def test_a_second_close_returns_only_once_the_first_has_ended_every_call(
    emulator: Emulator,
) -> None:
    """Two threads close one client at once (an explicit close() racing a `with` exit,
    a finaliser, a fixture's teardown): the one that finds it closing returns once
    every call is ended and the loop thread is gone, as the first does, not at once
    with a call still in progress."""
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503)])
    entered = threading.Event()

    def hook(event: RetryEvent) -> None:  # holds the loop for a bounded while
        entered.set()
        threading.Event().wait(1.0)

    client = SyncAccountClient(key, base_url=emulator.url, on_retry=hook)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            client.account.profile()
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert await asyncio.to_thread(entered.wait, 10)
    first = threading.Thread(target=client.close)
    first.start()

    def second_close() -> tuple[bool, bool]:
        deadline = time.monotonic() + 10
        while not client.closed and time.monotonic() < deadline:  # the first is closing
            threading.Event().wait(0.005)
        client.close()
        loop_thread = client._runner._thread
        return caller.is_alive() and not outcome, loop_thread is not None and (
            loop_thread.is_alive()
        )

    async with asyncio.timeout(20):
        still_calling, loop_alive = await asyncio.to_thread(second_close)
        await asyncio.to_thread(first.join, 10)
        await asyncio.to_thread(caller.join, 10)
    assert (still_calling, loop_alive) == (False, False)
    assert [type(exc).__name__ for exc in outcome] == ["ClientStateError"]


class _AnsweredAtTheDeadline(concurrent.futures.Future[str]):
    """A call whose answer lands just as its caller's wait times out: the wait's
    TimeoutError is raised after the result was set, as a race would have it."""

    def result(self, timeout: float | None = None) -> str:
        if timeout is not None and not self.done():
            self.set_result("the answer")
            raise concurrent.futures.TimeoutError
        return super().result(timeout)


def test_an_answer_that_lands_as_the_wait_times_out_is_returned_not_lost() -> None:
    """The wait timed out but the call had ended meanwhile: its cancel() cannot undo it,
    so the result (a dismissal that happened, say) is returned, not reported as a timeout."""
    runner = LoopThread(lambda: AccountClient(base_url="http://127.0.0.1:9"))
    try:
        assert runner.wait(_AnsweredAtTheDeadline(), 0.01) == "the answer"
    finally:
        runner.close()
