"""Balances across many keys: a streaming engine with bounded work.

[`AccountClient.balances()`][accountapi.AccountClient.balances] returns a [`BalanceStream`][accountapi.BalanceStream]. A fixed pool of
``concurrency`` worker tasks pulls keys from the input one at a time, checks each key's
profile through the client (per-key gate, 429 cool-down, retries, strict decoding) and
hands a [`BalanceResult`][accountapi.BalanceResult] to the consumer through a bounded deque, or through a
bounded reorder buffer when ``ordered=True``. Nothing is held per input key beyond the
dedupe window's last response bodies, so a million keys stream in flat memory; closing
the stream cancels the workers and their requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Sized
from types import TracebackType
from typing import TYPE_CHECKING, Final, TypeAlias

from ._account import PROFILE_PATH, parse_profile
from ._balance_results import BalanceFailed, BalanceOk, BalanceResult
from ._config import DEFAULT_CONCURRENCY as DEFAULT_CONCURRENCY  # re-exported for _client, _sync
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._decode import decode_profile
from ._exceptions import (
    AccountAPIError,
    ConfigurationError,
)
from ._keys import Credential, key_hint, malformed_key_error, match_key
from ._models import Profile

if TYPE_CHECKING:
    from ._calls import CallPath
    from ._callstate import Call

__all__ = ["BalanceStream", "KeySource"]

logger: Final = logging.getLogger("accountapi")

KeySource: TypeAlias = Iterable[str] | AsyncIterable[str]
"""What [`AccountClient.balances()`][accountapi.AccountClient.balances] reads keys from: any iterable or async iterable of str."""

DEFAULT_DEDUPE_WINDOW: Final = 10_000
# Results an ordered stream may hold while it waits for an earlier, slower key.
_REORDER_FACTOR: Final = 4


# What one check of a key produced, handed to the occurrences waiting for it: the profile
# itself, or the error.
_Outcome: TypeAlias = Profile | AccountAPIError
# What the dedupe window keeps of a finished check: the profile's response body, decoded
# again only for a repeat, or the error. A body is one flat bytes object, half the memory
# of a decoded profile and nothing for the garbage collector to walk: kept profiles made
# a 10,000-key run 11-13% slower (more frequent collections over every in-flight object).
_Kept: TypeAlias = bytes | AccountAPIError


# The most the dedupe window keeps, by the size of its response bodies and errors, so
# that large answers cannot make its memory grow with the window's length.
_WINDOW_BYTES: Final = 16 << 20
_ERROR_WEIGHT: Final = 1024  # an error's fields besides its message and details, roughly
_MAX_KEPT: Final = _WINDOW_BYTES // 16  # one huge answer would crowd out hundreds


def _weight(kept: _Kept) -> int:
    """The bytes a kept outcome costs the window, roughly (its body, or its error's text).

    `_Engine._fetched()` and `_Engine._keep()` inline the common case, a body:
    ``len(body) + 64``."""
    if isinstance(kept, bytes):
        return len(kept) + 64
    details = getattr(kept, "details", None)
    return _ERROR_WEIGHT + len(kept.message) + (0 if details is None else len(repr(details)))


def _detached(error: AccountAPIError) -> AccountAPIError:
    """A copy of ``error`` without traceback, cause or context.

    Each occurrence then owns its error object, and an outcome kept in the window does not
    keep the failed call's stack frames (and their locals) alive.
    """
    return copy.copy(error)


_NO_KEY: Final = object()  # what _pull() returns once the async input has no more keys


def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)


class _Engine:
    """The workers and the state they share; the [`BalanceStream`][accountapi.BalanceStream] is only its face.

    Results travel from workers to the consumer through a deque (unordered) or a dict by
    input index (ordered), each bounded; a side that must wait parks a future of its own
    and the other side wakes it. Workers reference the engine, never the stream, so
    dropping an unclosed stream lets it be collected and cancel the workers (see
    `BalanceStream.__del__()`).
    """

    def __init__(
        self,
        calls: CallPath,
        keys: KeySource,
        *,
        concurrency: int,
        ordered: bool,
        timeout: Timeout | float | NotGiven | None,
        dedupe_window: int,
    ) -> None:
        self._calls = calls
        self._profile_url = calls.url(PROFILE_PATH)
        self._keys = keys
        self._concurrency = concurrency
        self._ordered = ordered
        self._timeout = timeout
        self._window = dedupe_window
        self._window_bytes = 0  # the size of what the dedupe window keeps, roughly
        self._monotonic = calls.monotonic
        # Exactly one of these is set once started: the input as a sync or async iterator.
        self._iter: Iterator[str] | None = None
        self._aiter: AsyncIterator[str] | None = None
        self._exhausted = False
        self._input_error: BaseException | None = None
        self._crash: BaseException | None = None
        self._taken = 0  # keys pulled from the input so far; the next key's index
        self._running = 0  # workers not yet finished
        self._workers: list[asyncio.Task[None]] = []
        # Keys being checked; the future exists only once a duplicate waits for it.
        self._inflight: dict[str, asyncio.Future[_Outcome] | None] = {}
        self._recent: OrderedDict[str, _Kept] = OrderedDict()
        self.started = False
        self.closed = False
        # Results not yet taken: in completion order, or by input index when ordered.
        self._ready: deque[BalanceResult] = deque()
        self._buffer: dict[int, BalanceResult] = {}
        self._next = 0  # the index an ordered stream yields next
        # How many results may wait for the consumer (ordered: how far past _next).
        self._capacity = concurrency * (_REORDER_FACTOR if ordered else 1)
        self._consumers: deque[asyncio.Future[None]] = deque()  # waiting for a result
        self._blocked: deque[asyncio.Future[None]] = deque()  # workers waiting for room
        self._pull_lock: asyncio.Lock  # created in start(), inside the running loop

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the input and start the worker pool (called on first use, in the loop)."""
        self.started = True
        keys = self._keys
        if isinstance(keys, AsyncIterable):
            self._aiter = aiter(keys)
        else:
            self._iter = iter(keys)
        self._pull_lock = asyncio.Lock()
        workers = self._concurrency
        if isinstance(keys, Sized):
            workers = max(1, min(workers, len(keys)))
        self._running = workers
        self._workers = [
            asyncio.create_task(self._work(), name=f"accountapi-balances-{n}")
            for n in range(workers)
        ]

    def cancel(self) -> None:
        """Cancel every worker without waiting; safe from ``__del__`` in any thread (a
        stream collected outside its loop's thread hands the cancel to that loop)."""
        self.closed = True
        workers = self._workers
        if not workers:
            return
        loop = workers[0].get_loop()
        try:
            here = asyncio.get_running_loop() is loop
        except RuntimeError:
            here = False
        if here:
            _cancel_all(workers)
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: so are the tasks
                loop.call_soon_threadsafe(_cancel_all, list(workers))

    async def aclose(self) -> None:
        """Cancel the workers, wait until they have finished, and close an async input.

        Safe to run twice at once (a cancelled consumer and its caller both closing): each
        waits for every worker before the input is closed, so the input is never closed
        while a worker is still reading it.
        """
        self.cancel()
        workers = self._workers
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        self._workers = []
        # A consumer waiting in another task must see the end instead of waiting forever.
        _wake_all(self._consumers)
        await self._close_source()

    async def _close_source(self) -> None:
        # An async generator left open would be finalised later by the loop in a task of
        # its own; close it here so nothing of the stream outlives it.
        source, self._aiter, self._iter = self._aiter, None, None
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()

    # -- the consumer's side ---------------------------------------------------------

    def take(self) -> BalanceResult | None:
        """The next result if one is ready now, else None (never waits)."""
        if self.closed:
            return None
        if self._ordered:
            result = self._buffer.pop(self._next, None)
            if result is None:
                return None
            self._next += 1
            _wake_all(self._blocked)  # room opened for whichever index is next in line
            return result
        ready = self._ready
        if not ready:
            return None
        if self._blocked:
            _wake_one(self._blocked)
        return ready.popleft()

    async def next(self) -> BalanceResult:
        """The next result; ``StopAsyncIteration`` once every key has its result."""
        while not self.closed:
            result = self.take()
            if result is not None:
                return result
            if self._running == 0:
                if self._buffer:  # only after a crash lost a key: skip the gap
                    self._next = min(self._buffer)
                    continue
                break
            waiter = asyncio.get_running_loop().create_future()
            self._consumers.append(waiter)
            await waiter
        await self.aclose()
        failure = self._crash or self._input_error
        if failure is not None:
            raise failure
        raise StopAsyncIteration

    # -- the workers' side -----------------------------------------------------------

    async def _work(self) -> None:
        """Take keys until the input runs out; deliver one result for each."""
        source = self._iter  # a plain iterator is read inline; an async one through _pull()
        key: object
        result: BalanceResult
        ordered = self._ordered
        ready = self._ready
        capacity = self._capacity
        inflight = self._inflight
        recent = self._recent
        monotonic = self._monotonic
        request = self._calls.request
        url = self._profile_url
        timeout = self._timeout
        try:
            while not self._exhausted and not self.closed:
                if source is not None:
                    try:
                        key = next(source)
                    except StopIteration:
                        self._exhausted = True
                        break
                    except Exception as exc:  # the caller's iterable failed
                        self._input_failed(exc)
                        break
                elif (key := await self._pull()) is _NO_KEY:
                    break
                index = self._taken
                self._taken += 1
                start = monotonic()
                if type(key) is not str or match_key(key) is None:
                    result = self._malformed(index, key)
                elif key in inflight or key in recent:
                    result = await self._share(index, key, start)
                else:
                    # A key not seen within the window: check it. Inline rather than in
                    # a coroutine of its own, the path nearly every key takes.
                    inflight[key] = None
                    try:
                        # The key passed match_key(); the call path need not check it again.
                        fetched, call = await request(
                            "GET", url, parse_profile, Credential(key, valid=True), timeout
                        )
                    except AccountAPIError as exc:
                        # Detached: the original's traceback holds this frame and its key.
                        error = _detached(exc)
                        result = self._checked(index, key, start, exc.attempts, error, error)
                    except Exception as exc:
                        error = _unexpected(key, exc)  # keeps the bug as its __cause__
                        result = self._checked(index, key, start, 0, error, _detached(error))
                    except BaseException:
                        pending = inflight.pop(key)
                        if pending is not None:
                            pending.cancel()
                        raise
                    else:
                        result = self._fetched(index, key, start, fetched, call)
                # Wait for room: the consumer holds at most `capacity` results back.
                while (
                    index >= self._next + capacity if ordered else len(ready) >= capacity
                ) and not self.closed:
                    waiter = asyncio.get_running_loop().create_future()
                    self._blocked.append(waiter)
                    await waiter
                if ordered:
                    self._buffer[index] = result
                    if index != self._next:
                        continue
                else:
                    ready.append(result)
                if self._consumers:
                    _wake_one(self._consumers)
        except Exception as exc:  # a bug here must end the stream, not hang it
            # The type only: a message or traceback could quote a key.
            logger.error("balances() worker failed with %s; ending the stream", type(exc).__name__)
            self._crash = exc
        finally:
            self._running -= 1
            if self._running == 0 or self._crash is not None:
                _wake_all(self._consumers)

    def _input_failed(self, exc: Exception) -> None:
        """The caller's iterable raised: finish the keys already taken, then raise it."""
        self._exhausted = True
        self._input_error = exc

    async def _pull(self) -> object:
        """The next item of an async input, or ``_NO_KEY`` when it is used up or failed."""
        source = self._aiter
        if source is None:
            return _NO_KEY
        try:
            # Only one worker may be inside an async generator's __anext__ at a time.
            async with self._pull_lock:
                if self._exhausted or self.closed:
                    return _NO_KEY
                return await anext(source)
        except StopAsyncIteration:
            self._exhausted = True
        except Exception as exc:
            self._input_failed(exc)
        return _NO_KEY

    def _fetched(
        self, index: int, key: str, start: float, profile: Profile, call: Call[Profile]
    ) -> BalanceOk:
        """The result of a key checked by this occurrence: hand it to the waiting repeats
        and keep the answer's body in the window."""
        pending = self._inflight.pop(key)
        if pending is not None:
            pending.set_result(profile)
        body = call.answer.body  # type: ignore[union-attr]  # set with a value
        if self._window:
            # The common case inline: room for the body in the window.
            recent = self._recent
            total = self._window_bytes + len(body) + 64
            if (
                len(body) + 64 < _MAX_KEPT
                and total <= _WINDOW_BYTES
                and len(recent) < self._window
                and key not in recent
            ):
                recent[key] = body
                self._window_bytes = total
            else:
                self._keep(key, body)
        return BalanceOk(
            key=key,
            index=index,
            profile=profile,
            attempts=call.sent,
            elapsed=self._monotonic() - start,
        )

    def _checked(
        self,
        index: int,
        key: str,
        start: float,
        attempts: int,
        error: AccountAPIError,
        shared: AccountAPIError,
    ) -> BalanceFailed:
        """The result of a key whose check failed with ``error``; ``shared``, a copy
        without traceback (see `_detached()`), goes to the waiting repeats and into
        the window."""
        pending = self._inflight.pop(key)
        if pending is not None:
            pending.set_result(shared)
        if self._window:
            self._keep(key, shared)
        return BalanceFailed(
            key=key,
            index=index,
            error=error,
            attempts=attempts,
            elapsed=self._monotonic() - start,
        )

    def _keep(self, key: str, kept: _Kept) -> None:
        """Remember a finished check for repeats, within the window's count and bytes."""
        size = _weight(kept)
        if size > _MAX_KEPT:
            return  # one huge answer would crowd out hundreds of ordinary ones
        recent = self._recent
        total = self._window_bytes + size
        if key in recent:  # not reached today (a repeat shares instead), kept exact anyway
            total -= _weight(recent.pop(key))
        recent[key] = kept
        while len(recent) > self._window or total > _WINDOW_BYTES:
            # A full window evicts one per key checked: the common case (a body) inline.
            old = recent.popitem(last=False)[1]
            total -= len(old) + 64 if type(old) is bytes else _weight(old)
        self._window_bytes = total

    async def _share(self, index: int, key: str, start: float) -> BalanceResult:
        """A repeat of a key checked within the window or being checked right now."""
        kept = self._recent.get(key)
        outcome: _Outcome
        if kept is not None:
            self._recent.move_to_end(key)
            try:
                # Decoded once already, so this succeeds; a copy per repeat, as for errors.
                outcome = decode_profile(kept) if isinstance(kept, bytes) else kept
            except AccountAPIError as exc:  # pragma: no cover - the same bytes decoded before
                outcome = exc
        else:
            pending = self._inflight[key]
            if pending is None:
                pending = self._inflight[key] = asyncio.get_running_loop().create_future()
            # shield: this occurrence being cancelled must not cancel the shared check.
            outcome = await asyncio.shield(pending)
        if isinstance(outcome, AccountAPIError):
            return BalanceFailed(
                key=key,
                index=index,
                error=_detached(outcome),
                elapsed=self._monotonic() - start,
                shared=True,
            )
        return BalanceOk(
            key=key,
            index=index,
            profile=outcome,
            elapsed=self._monotonic() - start,
            shared=True,
        )

    @staticmethod
    def _malformed(index: int, key: object) -> BalanceFailed:
        # Built, never raised: a raised error's traceback would keep this frame's key.
        credential = Credential(key)
        error = malformed_key_error(credential)
        error.key_hint = credential.hint
        return BalanceFailed(key=key, index=index, error=error)  # type: ignore[arg-type]


def _unexpected(key: str, exc: Exception) -> AccountAPIError:
    """A bug, not the service: report it as this key's error and keep the others going."""
    hint = key_hint(key)
    logger.error(
        "unexpected %s while checking key %s; reported as that key's error",
        type(exc).__name__,
        hint,
    )
    error = AccountAPIError(
        f"unexpected {type(exc).__name__} while checking the key "
        "(a bug in accountapi; see __cause__)",
        key_hint=hint,
    )
    error.__cause__ = exc
    return error


class BalanceStream:
    """An async iterator of [`BalanceResult`][accountapi.BalanceResult], one per input key; see [`AccountClient.balances()`][accountapi.AccountClient.balances].

    Work starts on the first ``__anext__``. Use it as ``async with client.balances(keys)
    as results:`` (or wrap it in `contextlib.aclosing()`) so that leaving the block
    early cancels the checks still running and waits for them. Cancelling the task that
    iterates does the same. A stream dropped after a bare ``break`` cancels its checks
    when it is garbage-collected, without waiting for them.
    """

    __slots__ = ("_engine",)

    def __init__(
        self,
        calls: CallPath,
        keys: KeySource,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        ordered: bool = False,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        dedupe_window: int = DEFAULT_DEDUPE_WINDOW,
    ) -> None:
        if isinstance(keys, str | bytes):
            raise ConfigurationError(
                "keys must be an iterable of API keys, not a single str or bytes"
            )
        if not isinstance(keys, Iterable | AsyncIterable):
            raise ConfigurationError(
                f"keys must be an iterable or async iterable of str, not {type(keys).__name__}"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(
                f"concurrency must be a whole number >= 1, not {concurrency!r}"
            )
        if (
            isinstance(dedupe_window, bool)
            or not isinstance(dedupe_window, int)
            or dedupe_window < 0
        ):
            raise ConfigurationError(
                f"dedupe_window must be a whole number >= 0, not {dedupe_window!r}"
            )
        if not isinstance(timeout, NotGiven):
            try:
                Timeout.coerce(timeout)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"timeout: {exc}") from None
        self._engine = _Engine(
            calls,
            keys,
            concurrency=concurrency,
            ordered=bool(ordered),
            timeout=timeout,
            dedupe_window=dedupe_window,
        )

    def __aiter__(self) -> BalanceStream:
        return self

    async def __anext__(self) -> BalanceResult:
        engine = self._engine
        if not engine.started and not engine.closed:
            engine.start()
        ready = engine._ready
        if ready and not engine._blocked and not engine.closed:
            return ready.popleft()  # the common case under load: no wait, no further call
        result = engine.take()
        if result is not None:
            return result
        try:
            return await engine.next()
        except StopAsyncIteration:
            raise
        except BaseException:
            # Cancelled (or failed) while waiting: take the checks in flight down with us.
            await engine.aclose()
            raise

    async def aclose(self) -> None:
        """Stop: cancel the checks in flight and wait until they have ended. Idempotent."""
        await self._engine.aclose()

    async def __aenter__(self) -> BalanceStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Best effort after a bare ``break``: the workers hold the engine, not this object.
        engine = getattr(self, "_engine", None)
        if engine is not None and not engine.closed:
            engine.cancel()

    def __repr__(self) -> str:
        engine = self._engine
        state = "closed" if engine.closed else "running" if engine.started else "not started"
        return f"<BalanceStream {state}>"
