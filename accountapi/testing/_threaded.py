"""The emulator on a thread of its own, for tests that block: sync tests, web test clients.

An [`Emulator`][accountapi.testing.Emulator] on the test's own event loop answers only while that loop runs, so a
plain test body that blocks (FastAPI's ``TestClient``, Flask's test client,
``SyncAccountClient``) would wait on a server that cannot answer. Here the emulator runs
on a private loop in a daemon thread; every method the test calls is handed to that loop
and waited for, with a bound, so the emulator's state is only ever touched by its own
thread, as [`Emulator`][accountapi.testing.Emulator] requires.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import threading
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, NoReturn, TypeVar

from ._emulator import PROFILE_PATH, Emulator, RequestRecord
from ._faults import Fault

__all__ = ["ThreadedEmulator"]

T = TypeVar("T")


_NOT_RUNNING = "the emulator is not running; use `with` or start()"


class _Serving:
    """One run of the emulator: its thread, loop and URL, and the calls handed to its loop.

    Every call handed over is tracked until answered, so that the end of the run can fail
    the ones its loop will never take up, at once, instead of leaving them to time out.
    """

    __slots__ = ("_lock", "_pending", "emulator", "loop", "stopping", "thread", "url")

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.loop = asyncio.get_running_loop()
        self.thread = threading.current_thread()
        self.url = emulator.url
        self.stopping = asyncio.Event()
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] | None = set()  # None: ended

    def submit(self, future: concurrent.futures.Future[Any], callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop; ``future`` fails when the run ends before it is set."""
        with self._lock:
            if self._pending is None:
                raise RuntimeError(_NOT_RUNNING)
            self._pending.add(future)
            # The loop is open: it closes only after end(), which takes this lock first.
            self.loop.call_soon_threadsafe(callback)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            if self._pending is not None:
                self._pending.discard(future)

    def end(self) -> None:
        """Refuse new calls and fail those not answered; on the loop's thread, before it closes."""
        with self._lock:
            pending, self._pending = self._pending or set(), None
        for future in pending:
            _settle(future, _not_running)


def _not_running() -> NoReturn:
    raise RuntimeError(_NOT_RUNNING)


def _settle(future: concurrent.futures.Future[T], outcome: Callable[[], T]) -> None:
    """Set ``future`` to what ``outcome()`` returns or raises, unless it is already settled
    (failed when the run ended, or cancelled by a caller who stopped waiting)."""
    if future.done() or not future.set_running_or_notify_cancel():
        return
    try:
        result = outcome()
    except BaseException as exc:  # whatever it raised is the caller's, raised there
        future.set_exception(exc)
    else:
        future.set_result(result)


class ThreadedEmulator:
    """An [`Emulator`][accountapi.testing.Emulator] served on its own thread and event loop, safe to use from any thread.

    Use as ``with ThreadedEmulator() as emu:`` (or [`start()`][accountapi.testing.ThreadedEmulator.start] and [`stop()`][accountapi.testing.ThreadedEmulator.stop]); the
    keyword arguments are [`Emulator`][accountapi.testing.Emulator]'s. It answers while the calling thread blocks,
    so it serves sync and async tests alike; the ``accountapi_emulator`` fixture is one.

    Each method runs on the emulator's loop and is waited for at most ``call_timeout``
    seconds (``TimeoutError`` after that); [`profile()`][accountapi.testing.ThreadedEmulator.profile] and [`records`][accountapi.testing.ThreadedEmulator.records] return
    copies, so change a profile with [`call()`][accountapi.testing.ThreadedEmulator.call]. A call made after [`stop()`][accountapi.testing.ThreadedEmulator.stop], or
    still waiting when it stops, raises ``RuntimeError`` at once. [`start()`][accountapi.testing.ThreadedEmulator.start] waits at
    most ``call_timeout`` seconds too; [`stop()`][accountapi.testing.ThreadedEmulator.stop] waits at most ``stop_timeout`` seconds
    for the thread to end and raises if it did not.
    """

    def __init__(
        self, *, call_timeout: float = 10.0, stop_timeout: float = 10.0, **options: Any
    ) -> None:
        self._options = options
        self._call_timeout = call_timeout
        self._stop_timeout = stop_timeout
        self._serving: _Serving | None = None

    def __repr__(self) -> str:
        serving = self._serving
        return f"<ThreadedEmulator {serving.url if serving else 'not started'}>"

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the thread and bind the socket; returns once the emulator answers.

        An error starting the emulator (a bad option, a port in use) is raised here; a
        start that fails or takes longer than ``call_timeout`` leaves no thread or socket.
        """
        if self._serving is not None:
            raise RuntimeError("the emulator is already running")
        started: concurrent.futures.Future[_Serving] = concurrent.futures.Future()
        thread = threading.Thread(target=self._run, args=(started,), name="accountapi-emulator")
        thread.daemon = True  # never keeps a process alive whose test forgot stop()
        thread.start()
        try:
            self._serving = self._wait_until_started(started)
        except BaseException:
            if not started.cancel() and started.exception() is None:
                self._end(started.result())  # it started after all: stop it
            else:
                self._join(thread)  # it ends by itself, closing what it opened
            raise

    def _wait_until_started(self, started: concurrent.futures.Future[_Serving]) -> _Serving:
        try:
            return started.result(timeout=self._call_timeout)
        except TimeoutError:
            if not started.cancel():  # it started, or failed, just now
                return started.result()
            raise TimeoutError(
                f"the emulator did not start within {self._call_timeout} s"
            ) from None

    def _run(self, started: concurrent.futures.Future[_Serving]) -> None:
        asyncio.run(self._serve(started))

    async def _serve(self, started: concurrent.futures.Future[_Serving]) -> None:
        """The thread's whole life: start the emulator, serve until stopped, close it."""
        try:
            emulator = Emulator(**self._options)
            await emulator.start()
        except BaseException as exc:
            with contextlib.suppress(concurrent.futures.InvalidStateError):  # caller gone
                started.set_exception(exc)
            return
        serving = _Serving(emulator)
        try:
            started.set_result(serving)
        except concurrent.futures.InvalidStateError:  # start() gave up waiting: nobody stops it
            await emulator.close()
            return
        try:
            await serving.stopping.wait()
        finally:
            serving.end()
            await emulator.close()

    def stop(self) -> None:
        """Stop serving, close every connection, and join the thread; idempotent.

        Called on the emulator's own thread (inside [`call()`][accountapi.testing.ThreadedEmulator.call]), it stops without
        waiting: the thread ends once that call returns.
        """
        serving, self._serving = self._serving, None
        if serving is not None:
            self._end(serving)

    def _end(self, serving: _Serving) -> None:
        if threading.current_thread() is serving.thread:
            serving.stopping.set()
            return
        # RuntimeError: the loop is already closed, its thread ending or gone.
        with contextlib.suppress(RuntimeError):
            serving.loop.call_soon_threadsafe(serving.stopping.set)
        self._join(serving.thread)

    def _join(self, thread: threading.Thread) -> None:
        thread.join(self._stop_timeout)
        if thread.is_alive():
            raise RuntimeError(f"the emulator thread did not stop within {self._stop_timeout} s")

    def __enter__(self) -> ThreadedEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- running on the emulator's thread -------------------------------------------

    def call(self, function: Callable[[Emulator], T]) -> T:
        """Run ``function(emulator)`` on the emulator's thread and return its result.

        For what this class does not forward, such as editing a profile in place:
        ``emu.call(lambda e: e.profile(key).update(balance_eur="0.000000"))``.
        """
        serving = self._running()
        if threading.current_thread() is serving.thread:
            return function(serving.emulator)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        serving.submit(future, lambda: _settle(future, lambda: function(serving.emulator)))
        return self._wait(future)

    def _running(self) -> _Serving:
        serving = self._serving
        if serving is None:
            raise RuntimeError(_NOT_RUNNING)
        return serving

    def _wait(self, future: concurrent.futures.Future[T]) -> T:
        try:
            return future.result(timeout=self._call_timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"the emulator did not answer within {self._call_timeout} s "
                "(is something blocking its thread?)"
            ) from None

    # -- the Emulator's methods, forwarded -------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running emulator, e.g. ``http://127.0.0.1:54321``."""
        return self._running().url

    def add_key(
        self,
        profile: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        fault: Fault | None = None,
        latency: float | None = None,
    ) -> str:
        """Register a key and return it (see [`Emulator.add_key()`][accountapi.testing.Emulator.add_key])."""
        return self.call(lambda e: e.add_key(profile, key=key, fault=fault, latency=latency))

    def script(self, key: str | None, faults: Iterable[Fault]) -> None:
        """Queue one-shot faults for a key's next requests (see [`Emulator.script()`][accountapi.testing.Emulator.script])."""
        queued = list(faults)  # an iterator is read here, not on the other thread
        self.call(lambda e: e.script(key, queued))

    def set_fault_mix(self, mix: Iterable[tuple[float, Fault]], *, seed: int | None = None) -> None:
        """A random fault per request (see [`Emulator.set_fault_mix()`][accountapi.testing.Emulator.set_fault_mix])."""
        pairs = list(mix)
        self.call(lambda e: e.set_fault_mix(pairs, seed=seed))

    def set_latency(self, seconds: float) -> None:
        """The service time of every request (see [`Emulator.set_latency()`][accountapi.testing.Emulator.set_latency])."""
        self.call(lambda e: e.set_latency(seconds))

    def profile(self, key: str) -> dict[str, Any]:
        """A copy of the key's current wire profile; change it with [`call()`][accountapi.testing.ThreadedEmulator.call]."""
        return self.call(lambda e: copy.deepcopy(e.profile(key)))

    def attempts(
        self, key: str, path: str | None = PROFILE_PATH, *, include_unauthorized: bool = False
    ) -> int:
        """Requests seen with this key on ``path`` (see [`Emulator.attempts()`][accountapi.testing.Emulator.attempts])."""
        return self.call(lambda e: e.attempts(key, path, include_unauthorized=include_unauthorized))

    async def wait_for_attempts(
        self, key: str, count: int, path: str | None = PROFILE_PATH, *, timeout: float = 5.0
    ) -> None:
        """Wait, without blocking the caller's loop, until ``attempts(key, path)`` reaches
        ``count``; ``TimeoutError`` after ``timeout`` seconds."""
        serving = self._running()
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def begin() -> None:  # on the emulator's loop
            if future.done():  # the run ended, or the caller stopped waiting
                return
            waiting = serving.emulator.wait_for_attempts(key, count, path, timeout=timeout)
            task = asyncio.ensure_future(waiting)
            task.add_done_callback(lambda _: _settle(future, task.result))

        serving.submit(future, begin)
        await asyncio.wrap_future(future)

    @property
    def records(self) -> list[RequestRecord]:
        """Every finished request since the last [`reset_stats()`][accountapi.testing.ThreadedEmulator.reset_stats], in arrival order."""
        return self.call(lambda e: e.records)

    def max_in_flight(self, key: str) -> int:
        """The most requests of this key the emulator was handling at one time."""
        return self.call(lambda e: e.max_in_flight(key))

    @property
    def limit_rejections(self) -> int:
        """How many 429s the per-key concurrency limit sent."""
        return self.call(lambda e: e.limit_rejections)

    def reset_stats(self) -> None:
        """Forget records, attempt counts, in-flight peaks and limit rejections."""
        self.call(lambda e: e.reset_stats())
