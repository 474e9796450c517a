"""The emulator on a thread of its own, for tests that block: sync tests, web test clients.

An :class:`Emulator` on the test's own event loop answers only while that loop runs, so a
plain test body that blocks (FastAPI's ``TestClient``, Flask's test client,
``SyncAccountClient``) would wait on a server that cannot answer. Here the emulator runs
on a private loop in a daemon thread; every method the test calls is handed to that loop
and waited for, with a bound, so the emulator's state is only ever touched by its own
thread, as :class:`Emulator` requires.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from ._emulator import PROFILE_PATH, Emulator, RequestRecord
from ._faults import Fault

__all__ = ["ThreadedEmulator"]

T = TypeVar("T")


class ThreadedEmulator:
    """An :class:`Emulator` served on its own thread and event loop, safe to use from any thread.

    Use as ``with ThreadedEmulator() as emu:`` (or :meth:`start` and :meth:`stop`); the
    keyword arguments are :class:`Emulator`'s. It answers while the calling thread blocks,
    so it serves sync and async tests alike; the ``accountapi_emulator`` fixture is one.

    Each method runs on the emulator's loop and is waited for at most ``call_timeout``
    seconds (``TimeoutError`` after that); :meth:`profile` and :attr:`records` return
    copies, so change a profile with :meth:`call`. :meth:`stop` waits at most
    ``stop_timeout`` seconds for the thread to end and raises if it did not.
    """

    def __init__(
        self, *, call_timeout: float = 10.0, stop_timeout: float = 10.0, **options: Any
    ) -> None:
        self._options = options
        self._call_timeout = call_timeout
        self._stop_timeout = stop_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._emulator: Emulator | None = None
        self._stopping: asyncio.Event | None = None
        self._url: str | None = None

    def __repr__(self) -> str:
        return f"<ThreadedEmulator {self._url or 'not started'}>"

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the thread and bind the socket; returns once the emulator answers."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(
            target=asyncio.run, args=(self._serve(started),), name="accountapi-emulator"
        )
        thread.daemon = True  # never keeps a process alive whose test forgot stop()
        thread.start()
        try:
            started.result(timeout=self._call_timeout)
        except BaseException:
            self._end(thread)
            raise
        self._thread = thread

    async def _serve(self, started: concurrent.futures.Future[None]) -> None:
        """The thread's whole life: start the emulator, serve until stopped, close it."""
        emulator = Emulator(**self._options)
        self._stopping = asyncio.Event()
        try:
            await emulator.start()
        except BaseException as exc:
            started.set_exception(exc)
            return
        self._loop, self._emulator, self._url = asyncio.get_running_loop(), emulator, emulator.url
        started.set_result(None)
        try:
            await self._stopping.wait()
        finally:
            await emulator.close()

    def stop(self) -> None:
        """Stop serving, close every connection, and join the thread; idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._end(thread)

    def _end(self, thread: threading.Thread) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(self._stop_timeout)
        self._loop = self._emulator = self._stopping = self._url = None
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
        loop, emulator = self._running()
        if threading.current_thread() is self._thread:
            return function(emulator)

        async def run() -> T:
            return function(emulator)

        return self._wait(asyncio.run_coroutine_threadsafe(run(), loop))

    def _running(self) -> tuple[asyncio.AbstractEventLoop, Emulator]:
        loop, emulator = self._loop, self._emulator
        if loop is None or emulator is None:
            raise RuntimeError("the emulator is not running; use `with` or start()")
        return loop, emulator

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
        if self._url is None:
            raise RuntimeError("the emulator is not running; use `with` or start()")
        return self._url

    def add_key(
        self,
        profile: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        fault: Fault | None = None,
        latency: float | None = None,
    ) -> str:
        """Register a key and return it (see :meth:`Emulator.add_key`)."""
        return self.call(lambda e: e.add_key(profile, key=key, fault=fault, latency=latency))

    def script(self, key: str | None, faults: Iterable[Fault]) -> None:
        """Queue one-shot faults for a key's next requests (see :meth:`Emulator.script`)."""
        queued = list(faults)  # an iterator is read here, not on the other thread
        self.call(lambda e: e.script(key, queued))

    def set_fault_mix(self, mix: Iterable[tuple[float, Fault]], *, seed: int | None = None) -> None:
        """A random fault per request (see :meth:`Emulator.set_fault_mix`)."""
        pairs = list(mix)
        self.call(lambda e: e.set_fault_mix(pairs, seed=seed))

    def set_latency(self, seconds: float) -> None:
        """The service time of every request (see :meth:`Emulator.set_latency`)."""
        self.call(lambda e: e.set_latency(seconds))

    def profile(self, key: str) -> dict[str, Any]:
        """A copy of the key's current wire profile; change it with :meth:`call`."""
        return self.call(lambda e: copy.deepcopy(e.profile(key)))

    def attempts(
        self, key: str, path: str | None = PROFILE_PATH, *, include_unauthorized: bool = False
    ) -> int:
        """Requests seen with this key on ``path`` (see :meth:`Emulator.attempts`)."""
        return self.call(lambda e: e.attempts(key, path, include_unauthorized=include_unauthorized))

    async def wait_for_attempts(
        self, key: str, count: int, path: str | None = PROFILE_PATH, *, timeout: float = 5.0
    ) -> None:
        """Wait, without blocking the caller's loop, until ``attempts(key, path)`` reaches
        ``count``; ``TimeoutError`` after ``timeout`` seconds."""
        loop, emulator = self._running()
        waiting: Coroutine[Any, Any, None] = emulator.wait_for_attempts(
            key, count, path, timeout=timeout
        )
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(waiting, loop))

    @property
    def records(self) -> list[RequestRecord]:
        """Every finished request since the last :meth:`reset_stats`, in arrival order."""
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
