"""The lease/ticket protocol of the Redis key gate: `_SharedGate`, which only speaks
to Redis and lets a Redis error reach its caller. [`RedisKeyGate`][accountapi.gates.RedisKeyGate]
(`accountapi.gates._redis`) drives it; the Lua scripts and their runner are in
`accountapi.gates._scripts`.

- Slots are *leases*: members of a sorted set scored by their expiry in Redis server
  time (``TIME`` inside the scripts; no machine clock is trusted). One background
  task renews every lease and queue place the process holds each ``lease_ttl / 3``,
  and puts back any that Redis lost (a restart without persistence, a flush, a
  failover) while their requests still run; a worker that dies frees its slots
  within ``lease_ttl``.
- Waiting is a FIFO queue in Redis (a sorted set scored by an ``INCR`` ticket, with
  its own expiry so a dead waiter's place lapses too). Only as many waiters as there
  are free slots may take one, first come first served. A release publishes one
  message; in each process only the first local waiter polls Redis (every 5-50 ms,
  jittered, in case a message is lost or a lease expired), the rest wait on an
  in-process event.
- The cool-down after a 429 is a key with a ``PX`` TTL that every acquire reads. The
  client sets it before it releases the slot that got the 429, so no other process
  can take that slot before it sees the cool-down.
- Acquire is one ``EVALSHA``. A release is sent one event-loop tick later from a task
  the gate owns (so it happens even when its caller is being cancelled), batched
  with the other releases of that tick, and carried by the next acquire of the same
  key when there is one: calls that follow one another cost one round trip each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import secrets
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final

from accountapi._exceptions import ClientStateError

from ._protocol import GateTimeout, KeyCoolingDown
from ._scripts import Call, ScriptRunner, keeping_cancellation, key_hash, redis_keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["_Health", "_SharedGate"]

logger: Final = logging.getLogger("accountapi")

# Waiting head's poll interval: starts short (a slot freed by an expired lease is found
# quickly), doubles up to the cap; each wait is jittered so processes do not poll in step.
_POLL_MIN: Final = 0.005
_POLL_MAX: Final = 0.05
# How long the pub/sub reader waits for a message before checking it is still needed.
_LISTEN_IDLE: Final = 1.0
# close(): how long the gate's tasks get to finish, then to end once cancelled (in this
# many rounds of cancellation).
_CLOSE_GRACE: Final = 2.0
_CLOSE_CANCELS: Final = 20


async def _wait(event: asyncio.Event, limit: float) -> None:
    """Wait until ``event`` is set or ``limit`` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit):
            await event.wait()


class _Waiter:
    __slots__ = ("id", "ticket", "wake")

    def __init__(self, id: str, ticket: int) -> None:
        self.id = id  # also the lease id once granted
        self.ticket = ticket
        self.wake = asyncio.Event()


class _Renewal:
    """One renewal: a script call per key, and the waiters whose places it renews."""

    __slots__ = ("calls", "hashes", "waiting")

    def __init__(
        self, hashes: list[str], calls: list[Call], waiting: list[tuple[str, str]]
    ) -> None:
        self.hashes = hashes
        self.calls = calls
        self.waiting = waiting  # (key hash, waiter id)


class _KeyState:
    """This process's part in one key: the leases it holds and its callers waiting in line."""

    __slots__ = ("held", "key", "waiters")

    def __init__(self, key: str) -> None:
        self.key = key  # kept in memory only, for the local fallback gate
        self.held: list[str] = []
        self.waiters: list[_Waiter] = []  # ordered by ticket: [0] is the one that polls


class _Health:
    """What the shared part tells the public gate about Redis from its background work."""

    def answered(self) -> None:
        """Redis answered a command."""

    def failed(self, exc: BaseException) -> None:
        """A command in the background failed (a release, a renewal, a clean-up)."""


class _SharedGate:
    """The lease/ticket protocol in Redis. Redis errors reach the caller of
    `acquire()`, `cool_down()` and `count()`; background failures are told
    to ``health``. Ids that a failed command may have left in Redis (a lease granted as
    the reply timed out, a release that never arrived) are dropped when Redis answers
    again, rather than block slots until they expire."""

    def __init__(
        self,
        *,
        redis: Callable[[], Redis],
        scripts: ScriptRunner,
        redis_errors: tuple[type[Exception], ...],
        health: _Health,
        per_key: int,
        lease_ttl: float,
        namespace: str,
        retry_interval: float,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._redis_errors = redis_errors
        self._health = health
        self.per_key = per_key
        self.lease_ttl = lease_ttl
        self._ttl_ms = math.ceil(lease_ttl * 1000)
        self._namespace = namespace
        self._channel = f"{namespace}:gate:free"
        self._retry_interval = retry_interval
        self._keys: dict[str, _KeyState] = {}  # by key hash
        self._pending: dict[str, list[str]] = {}  # key hash -> leases to release next tick
        self._ids = itertools.count(1)
        # Lease and queue ids: unique per gate instance, meaningless outside it.
        self._id_prefix = secrets.token_hex(6)
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._renewed_at: float | None = None  # loop time of the last renewal that landed
        self._adopted: set[str] = set()  # leases made for calls the local gate admitted
        self._doubtful: list[tuple[float, str, str]] = []
        self._closing = asyncio.Event()  # set by close(): ends every wait of an acquire
        self._acquiring = 0  # acquires in progress (a script on its way, or queued)
        self._none_acquiring: asyncio.Event | None = None  # set when close() saw the last end
        # The tasks of acquires in progress: [Task.cancelling() when it began, how many
        # times close() cancelled it], so that close() can end one whose Redis command
        # hangs, and only close()'s cancellations become ClientStateError.
        self._acquirers: dict[asyncio.Task[Any], list[int]] = {}
        self._unfreed = 0  # ids close() could not free: left to expire in Redis
        self._closed = False  # close() has returned

    # -- for the public gate ----------------------------------------------------------

    def hash(self, key: str) -> str:
        return key_hash(self._namespace, key)

    async def acquire(self, key: str, timeout: float | None, max_cool_down: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        h = self.hash(key)
        lease = self._new_id()
        self._acquiring += 1  # from its first script on: close() waits for it to end
        task = asyncio.current_task()
        if task is not None:  # always, in a running acquire
            self._acquirers[task] = [task.cancelling(), 0]
        try:
            async with asyncio.timeout(timeout):
                await self._acquire(key, h, lease, deadline, max_cool_down)
        except GateTimeout:
            raise
        except TimeoutError:
            raise GateTimeout(f"no free slot within {timeout:.3f}s") from None
        except asyncio.CancelledError:
            if task is not None and self._ended_by_close(task):
                raise ClientStateError("the key gate is closed") from None
            raise
        finally:
            self._acquiring -= 1
            if task is not None:
                del self._acquirers[task]
            if not self._acquiring and self._none_acquiring is not None:
                self._none_acquiring.set()

    def _ended_by_close(self, task: asyncio.Task[Any]) -> bool:
        """Whether close(), and only close(), cancelled this acquire: its cancellations are
        taken back, the caller's own (or its deadline's) stay."""
        began, by_close = self._acquirers[task]
        if not by_close:
            return False
        left = task.cancelling()
        for _ in range(by_close):
            left = task.uncancel()
        return left <= began

    def release(self, key: str) -> None:
        """Give back one of this process's slots of ``key`` (next tick); none held: nothing."""
        h = self.hash(key)
        state = self._keys.get(h)
        if state is None or not state.held:
            return  # nothing held: an unbalanced release, or leases handed to the fallback
        lease = state.held.pop()
        self._forget_if_idle(h, state)
        self._pending.setdefault(h, []).append(lease)
        if self._flusher is None:
            self._flusher = self._spawn(self._flush())

    async def cool_down(self, key: str, ms: int) -> None:
        """Set the key's shared cool-down; releases of this tick ride along, freed after it."""
        h = self.hash(key)
        ids = self._pending.pop(h, [])
        try:
            await self._scripts.eval(
                "release", redis_keys(self._namespace, h, "release"), (ms, self._channel, h, *ids)
            )
        except self._redis_errors:
            self._doubt(h, ids)
            raise
        except BaseException:
            if ids:  # cancelled mid-command: make sure the slots are freed all the same
                self._spawn(self._drop(h, ids))
            raise
        self._answered()

    async def count(self, key: str) -> int:
        """Live leases for ``key`` across every process."""
        count = await self._scripts.eval(
            "count", redis_keys(self._namespace, self.hash(key), "count"), ()
        )
        self._answered()
        return int(count)

    def held(self, key: str) -> int:
        state = self._keys.get(self.hash(key))
        return len(state.held) if state is not None else 0

    def adopt(self, key: str, count: int) -> None:
        """Hold ``count`` more slots of ``key`` as leases: running calls that an outage's
        local gate admitted. They reach Redis with `write_adopted()`."""
        h = self.hash(key)
        state = self._state(h, key)
        fresh = [self._new_id() for _ in range(count)]
        state.held.extend(fresh)
        self._adopted.update(fresh)
        if self._renewer is None:
            self._renewer = self._spawn(self._renew_loop())

    @property
    def unwritten(self) -> bool:
        """Whether adopted leases may not be in Redis yet."""
        return bool(self._adopted)

    async def write_adopted(self) -> None:
        """Renew now, which writes the adopted leases; Redis errors reach the caller."""
        renewal = self._renewal()
        if renewal is not None:
            await self._renew(renewal)
        self._adopted.clear()  # written, or released meanwhile

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as one of this gate's tasks (ended by `close()`)."""
        self._spawn(coro)

    def held_counts(self) -> dict[str, int]:
        """How many Redis slots this process holds, by key."""
        return {state.key: len(state.held) for state in self._keys.values() if state.held}

    async def settle(self) -> None:
        """Wait for this gate's pending releases and clean-ups to reach Redis."""
        while True:
            if self._pending and self._flusher is None:
                self._flusher = self._spawn(self._flush())
            busy = {t for t in self._tasks if t is not self._listener and t is not self._renewer}
            if not busy:
                return
            await asyncio.wait(busy)

    async def close(self, *, free_slots: bool) -> None:
        """End the waiting acquires (ClientStateError); stop renewing; free the held slots
        when Redis may answer; end every task. Bounded: about three times `_CLOSE_GRACE`.

        Once it returns the public gate drops its Redis client, so no command is started
        after it: what it could not free by then is logged and left to expire within ``lease_ttl``.
        """
        self._closing.set()
        for state in self._keys.values():
            for waiter in state.waiters:
                waiter.wake.set()
        # They end (their scripts back, their leases and queue places dropped, or failing
        # to) before the tasks do: an acquire whose first script is still on its way
        # counts too, or it would take a slot, or a place, after the gate closed.
        if self._acquiring:
            left = self._none_acquiring = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_GRACE):
                    await left.wait()
        for task in (self._listener, self._renewer):
            if task is not None:
                task.cancel()
        for h, state in self._keys.items():
            if state.held:
                self._pending.setdefault(h, []).extend(state.held)
                state.held.clear()
        if free_slots and self._pending and self._flusher is None:
            self._flusher = self._spawn(self._flush())
        # An acquire still in a Redis command now (one that hangs: a client without a
        # socket_timeout, a frozen Redis) is ended too, with ClientStateError, rather
        # than left to finish, and drop what its script took, after close() returned.
        self._cancel_acquirers()
        loop = asyncio.get_running_loop()
        until = loop.time() + _CLOSE_GRACE
        while (busy := self._busy()) and (left_s := until - loop.time()) > 0:
            await asyncio.wait(busy, timeout=left_s, return_when=asyncio.FIRST_COMPLETED)
        # Cancelled again until they end: a cancellation can be lost in redis-py (see
        # `keeping_cancellation`), and a task that lost one must not hold close() forever.
        for _ in range(_CLOSE_CANCELS):
            if not (busy := self._busy()):
                break
            for task in self._tasks:
                task.cancel()
            self._cancel_acquirers()
            await asyncio.wait(busy, timeout=_CLOSE_GRACE / _CLOSE_CANCELS)
        self._closed = True
        if self._tasks or self._acquirers:
            logger.warning(
                "key gate: %d background task(s) and %d acquire(s) did not end when "
                "cancelled; left running; they start no further Redis command",
                len(self._tasks),
                len(self._acquirers),
            )
        if self._unfreed:
            unfreed, self._unfreed = self._unfreed, 0
            self._left_to_expire(unfreed)

    def _busy(self) -> set[asyncio.Task[Any]]:
        return {*self._tasks, *self._acquirers}

    def _cancel_acquirers(self) -> None:
        for task, marks in self._acquirers.items():
            task.cancel()
            marks[1] += 1

    def _left_to_expire(self, count: int) -> None:
        """``count`` leases or queue places the closing gate could not free: say so (once
        the close has ended; before, `close()` adds them up)."""
        if not self._closed:
            self._unfreed += count
            return
        logger.warning(
            "key gate: closed before %d slot lease(s) or queue place(s) could be freed in "
            "Redis; they expire within lease_ttl=%ss",
            count,
            self.lease_ttl,
        )

    # -- acquiring ----------------------------------------------------------------------

    async def _acquire(
        self,
        key: str,
        h: str,
        lease: str,
        deadline: float | None,
        max_cool_down: float | None,
    ) -> None:
        granted, ticket, cool_ms, free_left = await self._try(h, lease, 0)
        if self._closing.is_set():  # closed while the script ran: give back what it took
            self._spawn(self._drop(h, [lease]))
            raise ClientStateError("the key gate is closed")
        # Look the state up only now: while the script ran, another call may have dropped
        # an idle one. From here on it holds our waiter or lease, so it stays.
        state = self._state(h, key)
        if granted:
            self._grant(state, lease, free_left)
            return
        waiter = _Waiter(lease, ticket)
        waiters = state.waiters
        index = len(waiters)
        while index and waiters[index - 1].ticket > ticket:
            index -= 1
        waiters.insert(index, waiter)
        self._ensure_helpers()
        loop = asyncio.get_running_loop()
        delay = _POLL_MIN
        try:
            while True:
                if cool_ms > 0:
                    left = cool_ms / 1000
                    if (deadline is not None and loop.time() + left > deadline) or (
                        max_cool_down is not None and left > max_cool_down
                    ):
                        raise KeyCoolingDown(left)
                    await _wait(self._closing, cool_ms / 1000)
                    delay = _POLL_MIN
                    if waiters[0] is not waiter:
                        await waiter.wake.wait()
                elif waiters[0] is waiter:
                    if not waiter.wake.is_set():
                        poll = delay * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not cryptography
                        await _wait(waiter.wake, poll)
                    delay = _POLL_MIN if waiter.wake.is_set() else min(delay * 2, _POLL_MAX)
                else:
                    await waiter.wake.wait()
                if self._closing.is_set():
                    raise ClientStateError("the key gate is closed")
                waiter.wake.clear()
                granted, _, cool_ms, free_left = await self._try(h, lease, ticket)
                if self._closing.is_set():  # closed while the script ran: a slot it took is dropped
                    granted = False
                    raise ClientStateError("the key gate is closed")
                if granted:
                    return
        finally:
            was_head = waiters[0] is waiter
            waiters.remove(waiter)
            if granted:
                self._grant(state, lease, free_left)
            else:
                # Leaving the queue (timeout, cancellation, outage): give up the place.
                self._spawn(self._drop(h, [lease]))
                self._forget_if_idle(h, state)
            if was_head and waiters:
                waiters[0].wake.set()  # the next in line starts polling

    async def _try(self, h: str, lease: str, ticket: int) -> tuple[bool, int, int, int]:
        """One acquire script; if cancelled mid-command, drop whatever it may have taken."""
        # Releases of this key from this tick ride along, freed before the acquire.
        released = self._pending.pop(h, [])
        try:
            result = await self._scripts.eval(
                "acquire",
                redis_keys(self._namespace, h, "acquire"),
                (self.per_key, self._ttl_ms, lease, ticket, self._channel, h, *released),
            )
        except BaseException as exc:
            if isinstance(exc, self._redis_errors):
                self._doubt(h, [lease, *released])  # the script may run once Redis catches up
            else:
                self._spawn(self._drop(h, [lease, *released]))
            raise
        self._answered()
        granted, new_ticket, cool_ms, free_left = (int(x) for x in result)
        return granted == 1, new_ticket, cool_ms, free_left

    def _grant(self, state: _KeyState, lease: str, free_left: int) -> None:
        state.held.append(lease)
        if self._renewer is None:
            self._renewer = self._spawn(self._renew_loop())
        if free_left > 0 and state.waiters:
            state.waiters[0].wake.set()

    def _state(self, h: str, key: str) -> _KeyState:
        state = self._keys.get(h)
        if state is None:
            state = self._keys[h] = _KeyState(key)
        return state

    def _forget_if_idle(self, h: str, state: _KeyState) -> None:
        if not state.held and not state.waiters and self._keys.get(h) is state:
            del self._keys[h]

    def _new_id(self) -> str:
        return f"{self._id_prefix}:{next(self._ids):x}"

    # -- background work: releases, renewals, wake-ups ----------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _flush(self) -> None:
        """Send the releases queued since the last tick: one EVALSHA per key, pipelined."""
        self._flusher = None
        batch, self._pending = self._pending, {}
        if not batch:
            return
        if len(batch) == 1:
            ((h, ids),) = batch.items()
            await self._drop(h, ids)
            return
        calls: list[Call] = [
            ("release", redis_keys(self._namespace, h, "release"), (0, self._channel, h, *ids))
            for h, ids in batch.items()
        ]
        try:
            await self._scripts.eval_many(calls)
        except ClientStateError:  # closed before this ran: as in _drop, the leases expire
            self._left_to_expire(sum(map(len, batch.values())))
            return
        except asyncio.CancelledError:
            if self._closing.is_set():  # the close ended it: Redis did not answer in time
                self._left_to_expire(sum(map(len, batch.values())))
            raise
        except self._redis_errors as exc:
            for h, ids in batch.items():
                self._doubt(h, ids)
            self._health.failed(exc)
        else:
            self._answered()

    async def _drop(self, h: str, ids: Sequence[str]) -> None:
        """Remove leases or queue places (idempotent); an outage leaves them to expire."""
        try:
            await self._scripts.eval(
                "release", redis_keys(self._namespace, h, "release"), (0, self._channel, h, *ids)
            )
        except ClientStateError:
            # The gate was closed (and its client dropped) before this ran, e.g. for a
            # task that outlived the close: Redis lets them expire.
            self._left_to_expire(len(ids))
            return
        except asyncio.CancelledError:
            if self._closing.is_set():  # the close ended it: Redis did not answer in time
                self._left_to_expire(len(ids))
            raise
        except self._redis_errors as exc:
            self._doubt(h, ids)
            self._health.failed(exc)
        else:
            self._answered()

    async def _renew_loop(self) -> None:
        """Renew every lease and queue place this gate holds; ends when it holds none.

        It must outlive any failure: a renewer that died would let every lease expire
        under requests still running, and other processes would be admitted beside them.
        Not held back by an outage: a lease that misses its renewal expires under a
        running request, and one small round trip a tick is how an outage ends first.
        """
        interval = self.lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            renewal = self._renewal()
            if renewal is None:
                self._renewer = None
                return
            try:
                await self._renew(renewal)
            except ClientStateError:  # it outlived the close: nothing to renew any more
                self._renewer = None
                return
            except self._redis_errors as exc:
                self._health.failed(exc)
            except Exception:  # a bug or an odd reply: log it, keep renewing
                logger.exception("key gate: renewing leases failed; trying again")

    def _renewal(self) -> _Renewal | None:
        """What to renew now: every lease and queue place this gate holds (None: nothing)."""
        calls: list[Call] = []
        hashes: list[str] = []
        waiting: list[tuple[str, str]] = []
        for h, state in self._keys.items():
            if not state.held and not state.waiters:
                continue
            args: list[str | int] = [self._ttl_ms, len(state.held), *state.held]
            for waiter in state.waiters:
                args += (waiter.id, waiter.ticket)
                waiting.append((h, waiter.id))
            calls.append(("renew", redis_keys(self._namespace, h, "renew"), tuple(args)))
            hashes.append(h)
        return _Renewal(hashes, calls, waiting) if calls else None

    async def _renew(self, renewal: _Renewal) -> None:
        """Send a renewal, then undo what it put back by the time it ran.

        The renewal was made before it waited for a connection and crossed the network:
        a lease released meanwhile, or a waiter that left the queue (timed out or was
        cancelled), may have been restored by it, and is dropped again now.
        """
        replies = await self._scripts.eval_many(renewal.calls)
        loop = asyncio.get_running_loop()
        renewed_before, self._renewed_at = self._renewed_at, loop.time()
        self._answered()
        self._restored(renewal.hashes, replies, renewed_before)
        departed: dict[str, list[str]] = {}
        for h, id in renewal.waiting:
            state = self._keys.get(h)
            still_here = state is not None and (
                id in state.held or any(w.id == id for w in state.waiters)
            )
            if not still_here:
                departed.setdefault(h, []).append(id)
        for h, ids in departed.items():
            self._spawn(self._drop(h, ids))

    def _restored(
        self, hashes: Sequence[str], replies: Sequence[Any], renewed_before: float | None
    ) -> None:
        """Account for leases the renewal found missing in Redis and put back.

        Still held here: restored, so the key's count is right again, with one WARNING
        per renewal that restored any, naming the cause: Redis lost them (renewed less
        than ``lease_ttl`` ago, so they cannot have expired) or this process went
        ``lease_ttl`` without renewing. Released while the renewal was on its way: put
        back by mistake, so dropped again at once.
        """
        restored = 0
        for h, reply in zip(hashes, replies, strict=True):
            if not reply:
                continue
            state = self._keys.get(h)
            held = set(state.held) if state is not None else set()
            stale = []
            for lease in map(_text, reply):
                if lease not in held:
                    stale.append(lease)
                elif lease in self._adopted:  # first written now, not lost
                    self._adopted.discard(lease)
                else:
                    restored += 1
            if stale:
                self._spawn(self._drop(h, stale))
        if not restored:
            return
        now = asyncio.get_running_loop().time()
        if renewed_before is not None and now - renewed_before < self.lease_ttl:
            cause = "Redis lost them (restarted without persistence, flushed, or failed over)"
        else:
            cause = (
                f"they expired: this process did not renew them for lease_ttl={self.lease_ttl}s "
                "(it stalled, or Redis did not answer for that long)"
            )
        logger.warning(
            "key gate: %d slot lease(s) held by running requests were missing from Redis: "
            "%s; restored",
            restored,
            cause,
        )

    def _ensure_helpers(self) -> None:
        if self._listener is None:
            self._listener = self._spawn(self._listen())
        if self._renewer is None:
            self._renewer = self._spawn(self._renew_loop())

    async def _listen(self) -> None:
        """Wake this process's first waiter of a key when any process frees one of its slots.

        Ends when no caller is waiting; polling covers lost messages and reconnects.
        """
        try:
            while True:
                pubsub = self._redis().pubsub()
                try:
                    await keeping_cancellation(pubsub.subscribe(self._channel))
                    while True:
                        message = await keeping_cancellation(
                            pubsub.get_message(ignore_subscribe_messages=True, timeout=_LISTEN_IDLE)
                        )
                        if message is None:
                            if not any(s.waiters for s in self._keys.values()):
                                return
                            continue
                        data = message.get("data")
                        h = data.decode() if isinstance(data, bytes) else str(data)
                        state = self._keys.get(h)
                        if state is not None and state.waiters:
                            state.waiters[0].wake.set()
                except self._redis_errors as exc:
                    logger.debug("key gate: Redis wake-up channel lost (%s); polling", _name(exc))
                finally:
                    close: Any = pubsub.aclose  # unannotated in redis-py
                    with contextlib.suppress(*self._redis_errors):
                        await close()
                if not any(s.waiters for s in self._keys.values()):
                    return
                await asyncio.sleep(self._retry_interval)
        except ClientStateError:
            return  # it outlived the close: no one waits any more
        finally:
            self._listener = None

    # -- ids a failed command may have left behind ----------------------------------------

    def _doubt(self, h: str, ids: Sequence[str]) -> None:
        now = asyncio.get_running_loop().time()
        if len(self._doubtful) > 10_000:  # a long outage: the oldest have expired anyway
            del self._doubtful[:5_000]
        self._doubtful.extend((now, h, id) for id in ids)

    def _answered(self) -> None:
        """Redis answered: tell the public gate, and drop the ids left in doubt."""
        self._health.answered()
        if not self._doubtful:
            return
        # Only ids younger than the lease TTL can still be there.
        since = asyncio.get_running_loop().time() - self.lease_ttl
        by_key: dict[str, list[str]] = {}
        for t, h, id in self._doubtful:
            if t >= since:
                by_key.setdefault(h, []).append(id)
        self._doubtful.clear()
        for h, ids in by_key.items():
            self._spawn(self._drop(h, ids))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _name(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
