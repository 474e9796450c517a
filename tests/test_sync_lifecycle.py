"""SyncAccountClient in real processes: fork, close from another thread, interpreter exit,
dropped clients, a blocking key iterable, a loop that stops answering, a Jupyter kernel.

The emulator runs on the test's event loop on a loopback port; blocking code runs in
worker threads (``asyncio.to_thread``) or in child processes started from
``sys.executable``, each with a bound, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import textwrap
import threading
import traceback
import types
from collections.abc import AsyncIterator, Iterator

import pytest

from accountapi import (
    APITimeoutError,
    ClientStateError,
    Limits,
    Profile,
    ServiceUnavailableError,
    SyncAccountClient,
)
from accountapi.testing import Emulator, Fault

PROCESS_BOUND = 60.0


async def _python(code: str, *args: str, dev: bool = False) -> tuple[int, str, str]:
    """Run ``code`` in a fresh interpreter (with ``-X dev``: asyncio's debug mode and its
    thread checks); its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *(("-X", "dev") if dev else ()),
        "-c",
        textwrap.dedent(code),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(PROCESS_BOUND):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


FORK_CHILD = """
import os, sys
from accountapi import SyncAccountClient

key, url = sys.argv[1], sys.argv[2]
client = SyncAccountClient(key, base_url=url)
parent = client.account.profile(timeout=3)  # warms the loop thread and the pool
pid = os.fork()
if pid == 0:
    try:
        child = client.account.profile(timeout=3)
        ok = child.id == parent.id
    except BaseException as exc:
        print("child failed:", type(exc).__name__, exc, flush=True)
        os._exit(1)
    os._exit(0 if ok else 2)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
pid = os.fork()
if pid == 0:
    client.close()  # a child that only closes: the parent's loop is not its to stop
    os._exit(0 if client.closed else 3)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status))
client.account.profile(timeout=3)  # the parent's pool still works after both children
client.close()
"""


async def test_a_client_used_before_os_fork_works_in_the_child(emulator: Emulator) -> None:
    """A client warmed in the parent answers in a bare os.fork() child on a connection
    of the child's own, and the parent's pool still works after."""
    key = emulator.add_key()
    code, out, err = await _python(FORK_CHILD, key, emulator.url)
    assert (code, out.split(), err) == (0, ["child", "exit", "0"] * 2, "")
    ports = [record.client_port for record in emulator.records]
    assert len(ports) == 3
    assert ports[1] not in (ports[0], ports[2])  # the child never used a parent socket


MULTIPROCESSING_FORK = """
import multiprocessing, sys
from accountapi import SyncAccountClient

key, url = sys.argv[1], sys.argv[2]
client = SyncAccountClient(key, base_url=url)


def work(_: int) -> str:
    return str(client.account.profile(timeout=3).balance_eur)


if __name__ == "__main__":
    client.account.profile(timeout=3)  # used in the parent first, as gunicorn --preload does
    with multiprocessing.get_context("fork").Pool(2) as pool:
        print(sorted(set(pool.map(work, range(6), chunksize=1))))
    client.close()
"""


async def test_a_client_used_before_a_multiprocessing_fork_pool_works_in_the_workers(
    emulator: Emulator,
) -> None:
    """multiprocessing's fork start method (Celery prefork, gunicorn --preload): the
    workers' calls all answer."""
    key = emulator.add_key({"balance_eur": "4.500000"})
    code, out, err = await _python(MULTIPROCESSING_FORK, key, emulator.url)
    assert (code, out.strip(), err) == (0, "['4.500000']", "")
    assert emulator.attempts(key) == 7


async def test_close_from_another_thread_ends_every_call_in_progress(emulator: Emulator) -> None:
    """Two calls on the wire and one waiting out Retry-After: 20: close() from another
    thread ends all three promptly with ClientStateError, and the
    key's slots are free."""
    slow = emulator.add_key(fault=Fault.delay(30))
    limited = emulator.add_key()
    emulator.script(limited, [Fault.rate_limited(20)])
    waiting = threading.Event()  # set as the client starts waiting out the 429
    client = SyncAccountClient(base_url=emulator.url, timeout=60, on_retry=lambda _: waiting.set())
    outcomes: list[BaseException | Profile] = []
    lock = threading.Lock()

    def call(key: str) -> None:
        try:
            result: BaseException | Profile = client.account.profile(api_key=key)
        except BaseException as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=call, args=(k,)) for k in (slow, slow, limited)]
    for thread in threads:
        thread.start()
    await emulator.wait_for_attempts(slow, 2)
    assert await asyncio.to_thread(waiting.wait, 10)

    def close_and_join() -> list[bool]:
        client.close()
        for thread in threads:
            thread.join(5)
        return [thread.is_alive() for thread in threads]

    alive = await asyncio.wait_for(asyncio.to_thread(close_and_join), 15)
    assert alive == [False, False, False]
    assert sorted(type(o).__name__ for o in outcomes) == ["ClientStateError"] * 3
    with pytest.raises(ClientStateError, match="closed"):
        client.account.profile(api_key=slow)
    assert emulator.attempts(limited) == 1  # nothing after the close


async def test_a_queued_call_is_ended_by_close_too(emulator: Emulator) -> None:
    """With the key's only slot held, a second thread's queued call ends at close()."""
    key = emulator.add_key(fault=Fault.delay(30))
    client = SyncAccountClient(key, base_url=emulator.url, limits=Limits(per_key=1), timeout=None)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            client.account.profile()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    await emulator.wait_for_attempts(key, 1)

    def close_and_join() -> list[bool]:
        client.close()
        for thread in threads:
            thread.join(5)
        return [thread.is_alive() for thread in threads]

    assert await asyncio.wait_for(asyncio.to_thread(close_and_join), 15) == [False, False]
    assert [type(e) for e in errors] == [ClientStateError, ClientStateError]
    assert sorted(e.attempts for e in errors if isinstance(e, ClientStateError)) == [0, 1]
    assert emulator.attempts(key) == 1


EXIT_WITH_ITERATOR = """
import sys
from accountapi import SyncAccountClient

url, keys = sys.argv[1], sys.argv[2:]
client = SyncAccountClient(base_url=url)
results = client.balances(keys, concurrency=2)  # kept in a global, never finished
print(next(results).ok, flush=True)
"""


async def test_exit_with_an_unfinished_balances_iterator_does_not_hang(emulator: Emulator) -> None:
    """A script that takes one result of balances(), keeps the iterator and ends: the
    process exits at once, with no warning on stderr."""
    keys = [emulator.add_key(latency=0.05) for _ in range(20)]
    code, out, err = await _python(EXIT_WITH_ITERATOR, emulator.url, *keys)
    assert (code, out.strip(), err) == (0, "True", "")


DROPPED_CLIENTS = """
import gc, os, sys, threading, warnings
from accountapi import SyncAccountClient

warnings.simplefilter("error")
key, url = sys.argv[1], sys.argv[2]


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def view() -> str:  # a naive view: a client per request, never closed
    return SyncAccountClient(key, base_url=url).account.profile(timeout=5).id


view()
gc.collect()
threads, descriptors = threading.active_count(), fds()
for _ in range(500):
    view()
gc.collect()
print(threading.active_count() - threads, fds() - descriptors)
never_closed = SyncAccountClient(key, base_url=url)
never_closed.account.profile(timeout=5)  # still open at exit: closed then, silently
"""


async def test_500_dropped_clients_leave_no_thread_or_descriptor(emulator: Emulator) -> None:
    """500 clients made per call and never closed leave no extra thread or file
    descriptor once collected, and a client still open at exit is closed without a
    warning."""
    key = emulator.add_key()
    code, out, err = await _python(DROPPED_CLIENTS, key, emulator.url)
    assert (code, out.split(), err) == (0, ["0", "0"], "")
    assert emulator.attempts(key) == 502


async def test_a_blocking_key_iterable_does_not_stall_other_threads(emulator: Emulator) -> None:
    """balances() reads its keys in the caller's thread: while that iterable blocks, a
    call from another thread on the same client answers."""
    keys = [emulator.add_key() for _ in range(3)]
    other = emulator.add_key()
    client = SyncAccountClient(base_url=emulator.url)
    blocked, release = threading.Event(), threading.Event()
    readers: set[int] = set()

    def slow_keys() -> Iterator[str]:
        readers.add(threading.get_ident())
        yield keys[0]
        blocked.set()
        assert release.wait(30)
        yield from keys[1:]

    def run_balances() -> tuple[int, int]:
        results = list(client.balances(slow_keys()))
        return threading.get_ident(), sum(r.ok for r in results)

    consumer = asyncio.ensure_future(asyncio.to_thread(run_balances))
    assert await asyncio.to_thread(blocked.wait, 10)
    profile = await asyncio.to_thread(client.account.profile, api_key=other, timeout=2)
    assert isinstance(profile, Profile)
    assert not release.is_set()  # answered while the iterable was still blocked
    release.set()
    caller, ok = await asyncio.wait_for(consumer, 10)
    assert (readers, ok) == ({caller}, 3)
    await asyncio.to_thread(client.close)


async def test_a_failing_key_iterable_ends_the_run_after_the_keys_it_gave(
    emulator: Emulator,
) -> None:
    """An iterable that raises mid-way: the keys read before it are answered, then its
    own exception reaches the caller, as with the async client."""
    keys = [emulator.add_key() for _ in range(5)]

    def broken() -> Iterator[str]:
        yield from keys
        raise LookupError("cursor lost")

    def run() -> tuple[int, str]:
        seen = 0
        with SyncAccountClient(base_url=emulator.url) as client:
            try:
                for result in client.balances(broken(), concurrency=2):
                    seen += result.ok
            except LookupError as exc:
                return seen, str(exc)
        return seen, "no error"

    assert await asyncio.to_thread(run) == (5, "cursor lost")


async def test_a_loop_that_stops_answering_bounds_the_wait(emulator: Emulator) -> None:
    """An on_retry hook that blocks the client's loop thread: the caller gets
    APITimeoutError at its deadline plus the grace, not a wait for ever."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(0)])  # a retry at once: the hook runs
    release = threading.Event()

    def stuck_hook(_: object) -> None:
        release.wait(30)

    client = SyncAccountClient(key, base_url=emulator.url, on_retry=stuck_hook)

    def call() -> BaseException | None:
        try:
            client.account.profile(timeout=0.5)
        except BaseException as exc:
            return exc
        return None

    try:
        error = await asyncio.wait_for(asyncio.to_thread(call), 10)
    finally:
        release.set()
    assert isinstance(error, APITimeoutError)
    assert "did not answer" in str(error)
    await asyncio.to_thread(client.close)


async def test_errors_cross_the_thread_unchanged(emulator: Emulator) -> None:
    """A final error raised on the loop reaches the caller as the same SDK class."""
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503)] * 3)

    def call() -> BaseException | None:
        with SyncAccountClient(key, base_url=emulator.url, max_retries=0) as client:
            try:
                client.account.profile()
            except BaseException as exc:
                return exc
        return None

    assert isinstance(await asyncio.to_thread(call), ServiceUnavailableError)


NOTEBOOK_CELL = """
from accountapi import SyncAccountClient
client = SyncAccountClient({key!r}, base_url={url!r})
print(client.account.profile(timeout=5).balance_eur)
client.close()
print(client.closed)
"""

RUN_NOTEBOOK = """
import sys
import nbclient, nbformat

notebook = nbformat.v4.new_notebook()
notebook.cells.append(nbformat.v4.new_code_cell(sys.argv[1]))
nbclient.NotebookClient(notebook, timeout=30, kernel_name="python3").execute()
for output in notebook.cells[0].outputs:
    print(output.get("text", output.get("ename", "")), end="")
"""


@pytest.mark.slow
async def test_works_in_a_jupyter_notebook_cell(emulator: Emulator) -> None:
    """In a real IPython kernel (whose event loop runs in the cell's thread) a cell's
    profile() and close() work, as with any sync library."""
    key = emulator.add_key({"balance_eur": "3.250000"})
    cell = NOTEBOOK_CELL.format(key=key, url=emulator.url)
    code, out, _ = await _python(RUN_NOTEBOOK, cell)  # a kernel's own chatter on stderr
    assert (code, out.split()) == (0, ["3.250000", "True"])
    assert emulator.attempts(key) == 1


ITERATOR_COLLECTED_ON_THE_LOOP = """
import gc, sys
from accountapi import SyncAccountClient

url, limited, keys = sys.argv[1], sys.argv[2], sys.argv[3:]


def collect(_event: object) -> None:
    gc.collect()  # on the client's loop thread, as an automatic collection may be


client = SyncAccountClient(base_url=url, on_retry=collect)
cycle: list[object] = [client.balances(keys, concurrency=2)]
cycle.append(cycle)  # the half-read iterator is freed only by the cycle collector
print(next(cycle[0]).ok)
del cycle
gc.disable()
print(client.account.profile(api_key=limited, timeout=2).id != "")
client.close()
"""


async def test_an_iterator_collected_on_the_loop_thread_does_not_block_it(
    emulator: Emulator,
) -> None:
    """A half-read balances() iterator freed by the cycle collector running on the
    client's own loop thread closes its stream without blocking that loop: the call that
    triggered it still answers within its 2 s deadline, and nothing is logged."""
    keys = [emulator.add_key(latency=0.05) for _ in range(10)]
    limited = emulator.add_key()
    emulator.script(limited, [Fault.rate_limited(0)])
    code, out, err = await _python(ITERATOR_COLLECTED_ON_THE_LOOP, emulator.url, limited, *keys)
    assert (code, out.split(), err) == (0, ["True", "True"], "")


CLOSE_WHILE_ANOTHER_THREAD_ITERATES = """
import sys, threading, time
from accountapi import ClientStateError, SyncAccountClient

url, keys = sys.argv[1], sys.argv[2:]
client = SyncAccountClient(base_url=url)
started, outcome = threading.Event(), []


def iterate() -> None:
    try:
        for _ in client.balances(keys, concurrency=4):
            started.set()
    except ClientStateError as exc:
        outcome.append(type(exc).__name__)


thread = threading.Thread(target=iterate)
thread.start()
assert started.wait(10)
began = time.monotonic()
client.close()
closing = time.monotonic() - began
thread.join(5)
print(outcome, thread.is_alive(), closing < 4.0)
"""


async def test_close_while_another_thread_iterates_balances_is_clean(emulator: Emulator) -> None:
    """close() while another thread iterates balances(), under asyncio's debug mode: the
    iterating thread gets ClientStateError, close() does not wait out its 5 s limit for
    workers cancelled from the wrong thread, and no task is destroyed pending."""
    keys = [emulator.add_key(latency=0.2) for _ in range(40)]
    code, out, err = await _python(
        CLOSE_WHILE_ANOTHER_THREAD_ITERATES, emulator.url, *keys, dev=True
    )
    assert (code, out.strip(), err) == (0, "['ClientStateError'] False True", "")


async def test_a_slow_async_key_source_is_not_cut_off_by_the_call_deadline(
    emulator: Emulator,
) -> None:
    """An async iterable of keys slower than each call's deadline (and its grace): every
    key is checked,
    since only the checks (not the wait for the next key) are bounded by it."""
    keys = [emulator.add_key() for _ in range(2)]

    async def slowly() -> AsyncIterator[str]:
        yield keys[0]
        await asyncio.sleep(2.0)  # longer than the 0.5 s deadline plus the 1 s grace
        yield keys[1]

    def run() -> list[bool]:
        # 0.5 s: room for a first call (new session, new connection) on a loaded
        # machine under coverage; 0.1 s cut one short in CI.
        with SyncAccountClient(base_url=emulator.url, timeout=0.5) as client:
            return [r.ok for r in client.balances(slowly())]

    assert await asyncio.wait_for(asyncio.to_thread(run), 20) == [True, True]


async def test_close_from_an_on_retry_hook_ends_the_call(emulator: Emulator) -> None:
    """close() from a hook running on the client's own loop thread closes the client (it
    does not wait for its own loop) and the retrying call ends with ClientStateError."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(0)] * 5)
    box: list[SyncAccountClient] = []
    client = SyncAccountClient(key, base_url=emulator.url, on_retry=lambda _: box[0].close())
    box.append(client)

    def call() -> BaseException | None:
        try:
            client.account.profile(timeout=5)
        except BaseException as exc:
            return exc
        return None

    error = await asyncio.wait_for(asyncio.to_thread(call), 10)
    assert isinstance(error, ClientStateError)
    assert client.closed
    assert emulator.attempts(key) == 1


async def test_in_a_kernel_only_the_main_thread_may_block_on_a_loop(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an IPython kernel in the process, a call from the client's own loop thread
    (a nested call in a hook) is still refused at once, not a wait on its own loop."""
    kernel_shell = types.SimpleNamespace(kernel=object())
    monkeypatch.setitem(
        sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel_shell)
    )
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(0)])
    nested: list[BaseException] = []
    box: list[SyncAccountClient] = []

    def hook(_: object) -> None:
        try:
            box[0].account.profile(timeout=3)
        except BaseException as exc:
            nested.append(exc)

    client = SyncAccountClient(key, base_url=emulator.url, on_retry=hook)
    box.append(client)
    profile = await asyncio.wait_for(asyncio.to_thread(client.account.profile, timeout=3), 10)
    assert isinstance(profile, Profile)
    assert [type(e) for e in nested] == [ClientStateError]
    await asyncio.to_thread(client.close)


async def test_a_failing_key_iterable_leaves_no_key_in_the_sdks_frames(emulator: Emulator) -> None:
    """The iterable's own exception reaches the caller without a frame of the SDK that
    holds a key among its locals (error trackers record them)."""
    keys = [emulator.add_key() for _ in range(3)]

    def broken(given: list[str]) -> Iterator[str]:
        yield from given
        raise LookupError("cursor lost")

    def run() -> LookupError:
        with SyncAccountClient(base_url=emulator.url) as client:
            try:
                list(client.balances(broken(keys), concurrency=2))
            except LookupError as exc:
                return exc
        raise AssertionError("no error")

    error = await asyncio.to_thread(run)
    sdk_locals = [
        repr(value)
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if "/accountapi/" in frame.f_code.co_filename
        for value in frame.f_locals.values()
    ]
    assert sdk_locals
    assert not [text for text in sdk_locals for key in keys if key in text]


@pytest.mark.slow
async def test_close_ends_waits_on_a_loop_that_cannot_answer(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """A call with no deadline waits on a loop blocked by a hook: close() from another
    thread, unable to stop that loop within its limit, ends the caller's wait itself with
    ClientStateError; once unblocked, the loop ends the call without asyncio logging
    "Task exception was never retrieved"."""
    key = emulator.add_key()
    emulator.script(key, [Fault.rate_limited(0)])
    entered, release = threading.Event(), threading.Event()

    def stuck_hook(_: object) -> None:
        entered.set()
        release.wait(30)

    client = SyncAccountClient(key, base_url=emulator.url, on_retry=stuck_hook, timeout=None)

    def call() -> BaseException | None:
        try:
            client.account.profile()
        except BaseException as exc:
            return exc
        return None

    caller = asyncio.ensure_future(asyncio.to_thread(call))
    loop_threads = set()
    try:
        assert await asyncio.to_thread(entered.wait, 10)
        loop_threads = {t for t in threading.enumerate() if t.name == "accountapi-sync"}
        await asyncio.wait_for(asyncio.to_thread(client.close), 15)
        error = await asyncio.wait_for(caller, 5)
    finally:
        release.set()
    assert isinstance(error, ClientStateError)
    assert client.closed
    # Unblocked, the loop runs the shutdown close() queued and its thread ends.
    for thread in loop_threads:
        await asyncio.to_thread(thread.join, 10)
        assert not thread.is_alive()
    del caller, error  # the error's traceback holds the call's future, and so its task
    gc.collect()  # a task whose exception nobody read is reported when it is collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
