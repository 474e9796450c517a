"""The per-key gate shared through Redis: one limit and one cool-down per key across processes.

:class:`~accountapi.MemoryKeyGate` keeps the service's 10-per-key limit inside one
process; eight workers using the same key would still send 80 requests at once.
:class:`RedisKeyGate` keeps the count in Redis instead, so every process (and machine)
using the same Redis and namespace shares it. How, per API key:

- Slots are *leases*: members of a sorted set scored by their expiry in Redis server time
  (``TIME`` inside the scripts; no machine clock is trusted). The gate renews the leases
  it holds every ``lease_ttl / 3`` from one background task, so a worker that dies
  holding slots frees them within ``lease_ttl``.
- Waiting is a FIFO queue in Redis (a sorted set scored by an ``INCR`` ticket, with its
  own expiry set so a dead waiter's place lapses too). Only as many waiters as there are
  free slots may take one, first come first served, so nobody starves. A release
  publishes one message; in each process only the first local waiter polls Redis (every
  5-50 ms, jittered, as a fallback for lost messages and expired leases), the rest wait
  on an in-process event: no hot loop, whatever the number of waiters.
- The cool-down after a 429 is a key with a ``PX`` TTL that every acquire reads.
- Acquire and release are one ``EVALSHA`` each (two round trips per uncontended call).
  A release is sent one event-loop tick later, so a ``cool_down`` that follows it at once
  (as the client does after a 429) frees the slot and starts the cool-down in one atomic
  script: no other process can slip a request in between.
- API keys never reach Redis: each is named by a truncated SHA-256 of namespace and key.

When Redis is unreachable or slower than ``socket_timeout``, the gate never hangs: with
``on_redis_error="local"`` (the default) it logs one WARNING per outage and limits each
process on its own (an in-process :class:`~accountapi.MemoryKeyGate`) until Redis answers
again; with ``"raise"`` every acquire fails with :class:`~accountapi.APIConnectionError`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import itertools
import logging
import math
import random
import secrets
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from ._exceptions import APIConnectionError, ClientStateError, ConfigurationError
from ._gate import MAX_COOL_DOWN, GateTimeout, KeyCoolingDown, MemoryKeyGate
from ._keys import key_hint

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisKeyGate"]

logger: Final = logging.getLogger("accountapi")

# Waiting head's poll interval: starts short (a slot freed by an expired lease is found
# quickly), doubles up to the cap; each wait is jittered so processes do not poll in step.
_POLL_MIN: Final = 0.005
_POLL_MAX: Final = 0.05
# Redis commands one gate runs at once (each on its own pooled connection).
_MAX_COMMANDS: Final = 8
# How long the pub/sub reader waits for a message before checking it is still needed.
_LISTEN_IDLE: Final = 1.0

# Every script computes `now` in Redis milliseconds from TIME, so expiry never depends on
# the clocks of the machines running the workers.
_NOW: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: leases, queue (member id -> ticket), queue expiry (id -> ms), ticket counter, cool-down
# ARGV: limit, ttl ms, id, ticket ('0' when not queued yet), channel, key hash, then this
#       process's releases of the key not sent yet (freed first: one round trip for both)
# Returns {1, 0, 0, slots still free} when granted, else {0, ticket, cool-down ms left, 0}.
_ACQUIRE: Final = (
    _NOW
    + """
local limit, ttl, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local ticket = tonumber(ARGV[4])
local freed = 0
for i = 7, #ARGV do freed = freed + redis.call('ZREM', KEYS[1], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 1000)
for i = 1, #stale do
  redis.call('ZREM', KEYS[2], stale[i])
  redis.call('ZREM', KEYS[3], stale[i])
end
local cool = redis.call('PTTL', KEYS[5])
if cool < 0 then cool = 0 end
local free = limit - redis.call('ZCARD', KEYS[1])
local ahead = redis.call('ZRANK', KEYS[2], id)
if not ahead then
  if ticket > 0 then
    -- our place lapsed (a stalled process): take it back, as the ticket still orders us
    redis.call('ZADD', KEYS[2], ticket, id)
    ahead = redis.call('ZRANK', KEYS[2], id)
  else
    ahead = redis.call('ZCARD', KEYS[2])
  end
end
if cool == 0 and ahead < free then
  redis.call('ZADD', KEYS[1], now + ttl, id)
  redis.call('PEXPIRE', KEYS[1], ttl + 1000)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  if freed > 0 and free > 1 and redis.call('EXISTS', KEYS[2]) == 1 then
    redis.call('PUBLISH', ARGV[5], ARGV[6])
  end
  return {1, 0, 0, free - 1}
end
if freed > 0 and cool == 0 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
if ticket == 0 then
  ticket = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[2], ticket, id)
end
redis.call('ZADD', KEYS[3], now + ttl, id)
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl + 1000) end
return {0, ticket, cool, 0}
"""
)

# KEYS: leases, queue, queue expiry, cool-down
# ARGV: cool-down ms (0: none), channel, key hash, ids to drop (leases or queue places)
# The cool-down is set before the slots are freed, in one script, so no other worker can
# take a freed slot before it sees the cool-down.
_RELEASE: Final = """
local cool = tonumber(ARGV[1])
if cool > 0 and redis.call('PTTL', KEYS[4]) < cool then
  redis.call('SET', KEYS[4], '1', 'PX', cool)
end
local freed = 0
for i = 4, #ARGV do
  freed = freed + redis.call('ZREM', KEYS[1], ARGV[i]) + redis.call('ZREM', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
end
if freed > 0 and cool == 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return freed
"""

# KEYS: leases, queue, queue expiry, ticket counter
# ARGV: ttl ms, number of leases n, n lease ids, then (id, ticket) pairs of waiters
# Returns the leases that had already expired (or were released as this was sent).
_RENEW: Final = (
    _NOW
    + """
local ttl, n = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lost = {}
for i = 3, 2 + n do
  -- A lease the holder still holds is put back if Redis lost it (a restart without
  -- persistence, a FLUSHALL, an expiry during a stall): the request is still running.
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    lost[#lost + 1] = ARGV[i]
  end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
if n > 0 then redis.call('PEXPIRE', KEYS[1], ttl + 1000) end
for i = 3 + n, #ARGV, 2 do
  -- A waiter's place is put back only if it is not a lease by now: the waiter list was
  -- taken before this script ran, and a waiter granted in between must not come back
  -- as a ghost ahead of everyone (one that left the queue is dropped again afterwards).
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[2], 'NX', ARGV[i + 1], ARGV[i])
    redis.call('ZADD', KEYS[3], now + ttl, ARGV[i])
  end
end
if #ARGV > 2 + n then
  for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ttl + 1000) end
end
return lost
"""
)

# KEYS: leases. Live leases (any process).
_COUNT: Final = (
    _NOW
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
)


#: One script call: its name, its KEYS and its ARGV.
_Call = tuple[str, Sequence[str], Sequence[str | int]]


class _Script:
    """A Lua script and its SHA1, run with EVALSHA (loaded on the first NOSCRIPT)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        # SHA1 is what Redis names scripts by; it is not used for security here.
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_SCRIPTS: Final = {
    name: _Script(src)
    for name, src in (
        ("acquire", _ACQUIRE),
        ("release", _RELEASE),
        ("renew", _RENEW),
        ("count", _COUNT),
    )
}


class _Waiter:
    __slots__ = ("id", "ticket", "wake")

    def __init__(self, id: str, ticket: int) -> None:
        self.id = id
        self.ticket = ticket
        self.wake = asyncio.Event()


class _Renewal:
    """One renewal: a script call per key, and the waiters whose places it renews."""

    __slots__ = ("calls", "hashes", "waiting")

    def __init__(
        self, hashes: list[str], calls: list[_Call], waiting: list[tuple[str, str]]
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


class RedisKeyGate:
    """A :class:`~accountapi.KeyGate` whose per-key limit and 429 cool-down live in Redis.

    Pass it to every worker's client: ``AccountClient(key_gate=RedisKeyGate(url))``.
    All processes that use the same Redis database and ``namespace`` share one limit of
    ``per_key`` requests in flight per API key and one cool-down per key. Use one gate per
    event loop, and :meth:`aclose` it when done (it frees the slots it still holds).

    - ``url``: the Redis to use (``redis://``, ``rediss://`` or ``unix://``), ignored when
      ``client`` is given.
    - ``per_key``: requests in flight per key across every process (the service allows 10).
    - ``lease_ttl``: seconds after which the slots of a worker that died are freed; a live
      gate renews its leases every ``lease_ttl / 3``. At least 0.5.
    - ``namespace``: prefix of every Redis key and channel; gates share limits only
      within one namespace.
    - ``on_redis_error``: ``"local"`` (default) falls back to an in-process limit while
      Redis is unreachable, logging one WARNING per outage; ``"raise"`` makes each call
      fail with :class:`~accountapi.APIConnectionError` (``request_sent=False``) instead.
    - ``socket_timeout``: how long one Redis command may take before Redis counts as
      unavailable, so a slow Redis cannot stall calls (default 0.25 s).
    - ``retry_interval``: during an outage, how long calls skip Redis before it is tried again.
    - ``client``: a ``redis.asyncio.Redis`` to use instead of creating one (for example
      ``Sentinel(...).master_for(name)``); it is not closed by :meth:`aclose`, and its
      own timeouts and retries apply. A Redis Cluster client is refused
      (:class:`~accountapi.ConfigurationError`): the gate needs one primary.
    """

    __slots__ = (
        "_channel",
        "_client",
        "_closed",
        "_commands",
        "_connect_client",
        "_convert_held",
        "_doubtful",
        "_flusher",
        "_id_prefix",
        "_ids",
        "_keys",
        "_lease_ttl",
        "_listener",
        "_local",
        "_local_held",
        "_namespace",
        "_no_script",
        "_on_error",
        "_outage",
        "_owns_client",
        "_paused_until",
        "_pending",
        "_per_key",
        "_redis_errors",
        "_renewer",
        "_retry_interval",
        "_tasks",
        "_ttl_ms",
        "_where",
    )

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        per_key: int = 10,
        lease_ttl: float = 10.0,
        namespace: str = "accountapi",
        on_redis_error: Literal["local", "raise"] = "local",
        socket_timeout: float = 0.25,
        retry_interval: float = 1.0,
        client: Redis | None = None,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import NoScriptError, RedisError
        except ImportError as exc:
            raise ConfigurationError(
                "RedisKeyGate needs the redis package: install the redis extra "
                "(pip install '.[redis]' from a clone, 'accountapi[redis]' from an index)"
            ) from exc
        if isinstance(per_key, bool) or not isinstance(per_key, int) or per_key < 1:
            raise ConfigurationError("per_key must be a whole number >= 1")
        if not _positive(lease_ttl) or lease_ttl < 0.5:
            raise ConfigurationError("lease_ttl must be a number of seconds >= 0.5")
        if not _positive(socket_timeout) or not _positive(retry_interval):
            raise ConfigurationError("socket_timeout and retry_interval must be seconds > 0")
        if on_redis_error not in ("local", "raise"):
            raise ConfigurationError('on_redis_error must be "local" or "raise"')
        if not isinstance(namespace, str) or not namespace or "{" in namespace:
            raise ConfigurationError("namespace must be a non-empty string without '{'")
        if client is None and (not isinstance(url, str) or not url.strip()):
            raise ConfigurationError("url must be a redis:// URL")
        if client is not None:
            from redis.asyncio.cluster import RedisCluster

            if isinstance(client, RedisCluster):
                raise ConfigurationError(
                    "RedisKeyGate does not support Redis Cluster: its scripts, queue and "
                    "wake-up channel are written for one primary. Use a single Redis, or "
                    "the primary of a Sentinel-managed set: "
                    "client=Sentinel(...).master_for(name)"
                )
            if not isinstance(client, aioredis.Redis):
                raise ConfigurationError(
                    "client must be a redis.asyncio.Redis (not the synchronous redis.Redis)"
                )

        self._per_key = per_key
        self._lease_ttl = float(lease_ttl)
        self._ttl_ms = math.ceil(lease_ttl * 1000)
        self._namespace = namespace
        self._channel = f"{namespace}:gate:free"
        self._on_error = on_redis_error
        self._retry_interval = float(retry_interval)
        self._redis_errors: tuple[type[Exception], ...] = (RedisError, builtins.ConnectionError)
        self._no_script: type[Exception] = NoScriptError
        self._owns_client = client is None
        self._client: Redis | None = client
        self._where = "the given client" if client is not None else _safe_url(url)

        def connect() -> Redis:
            # One retry, at once and only for a broken connection: after a Redis restart
            # every pooled connection is dead, and each would otherwise fail one command
            # and open an outage of its own. A slow Redis (a timeout) is not retried: one
            # slow command is one outage signal, bounded by socket_timeout.
            return aioredis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )

        self._connect_client = connect
        # At most this many commands (so connections) at once per gate: a burst of calls
        # then waits here, in the process, instead of opening a connection each and
        # having slow handshakes mistaken for a slow Redis.
        self._commands = asyncio.Semaphore(_MAX_COMMANDS)
        self._local = MemoryKeyGate(per_key)
        self._local_held: dict[str, int] = {}
        self._keys: dict[str, _KeyState] = {}  # by key hash
        self._pending: dict[str, list[str]] = {}  # key hash -> leases to release next tick
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._outage = False
        self._paused_until = 0.0
        self._convert_held = False
        # Ids a failed command may have left in Redis (a lease granted as the reply timed
        # out, a release that never arrived), dropped once Redis answers again.
        self._doubtful: list[tuple[float, str, str]] = []
        self._closed = False
        # Lease and queue ids: unique per gate instance, meaningless outside it.
        self._id_prefix = secrets.token_hex(6)

    # -- the KeyGate protocol ----------------------------------------------------------

    async def acquire(
        self, key: str, timeout: float | None, *, max_cool_down: float | None = None
    ) -> None:
        """Wait for a slot for ``key`` in Redis and for its shared cool-down to pass.

        Raises :class:`~accountapi.GateTimeout` when that cannot happen within
        ``timeout`` seconds, and :class:`~accountapi.KeyCoolingDown` at once if a
        cool-down outlasts ``timeout`` or ``max_cool_down``. A cancelled acquire leaves
        neither a lease nor a place in the queue behind.
        """
        if self._closed:
            raise ClientStateError("the key gate is closed")
        loop = asyncio.get_running_loop()
        if self._redis_paused(loop):
            await self._acquire_local(key, timeout, max_cool_down)
            return
        deadline = None if timeout is None else loop.time() + timeout
        h = self._hash(key)
        lease = self._new_id()
        try:
            async with asyncio.timeout(timeout):
                await self._acquire_redis(key, h, lease, deadline, max_cool_down)
        except GateTimeout:
            raise
        except TimeoutError:
            raise GateTimeout(f"no free slot within {timeout:.3f}s") from None
        except self._redis_errors as exc:
            self._redis_failed(exc, raising=True)
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            await self._acquire_local(key, remaining, max_cool_down)

    def release(self, key: str) -> None:
        """Give back a slot of ``key``; never raises, never waits.

        The Redis release goes out on the next event-loop tick from a task the gate owns,
        so it happens even when the caller is being cancelled, and a :meth:`cool_down`
        for the same key in the same tick is applied before the slot is freed.
        """
        count = self._local_held.get(key)
        if count:
            if count == 1:
                del self._local_held[key]
            else:
                self._local_held[key] = count - 1
            self._local.release(key)
            return
        h = self._hash(key)
        state = self._keys.get(h)
        if state is None or not state.held:
            return  # nothing held: an unbalanced release, or leases lost to an outage
        lease = state.held.pop()
        self._forget_if_idle(h, state)
        self._pending.setdefault(h, []).append(lease)
        if self._flusher is None:
            self._flusher = self._spawn(self._flush())

    async def cool_down(self, key: str, seconds: float) -> None:
        """Hold back every process's requests for ``key`` for ``seconds``; never raises.

        Slots of the key released in this tick are freed by the same script, after the
        cool-down is in place.
        """
        seconds = min(max(seconds, 0.0), MAX_COOL_DOWN)
        ms = math.ceil(seconds * 1000)
        if ms <= 0:
            return
        loop = asyncio.get_running_loop()
        if self._closed or self._paused(loop):
            self._local._cool_down_nowait(key, seconds)
            return
        h = self._hash(key)
        ids = self._pending.pop(h, [])
        try:
            await self._eval("release", self._redis_keys(h, "cool"), (ms, self._channel, h, *ids))
        except self._redis_errors as exc:
            self._doubt(h, ids)
            self._redis_failed(exc, raising=False)
            self._local._cool_down_nowait(key, seconds)
        except BaseException:
            if ids:  # cancelled mid-command: make sure the slots are freed all the same
                self._spawn(self._drop(h, ids))
            raise
        else:
            self._redis_ok()

    # -- beyond the protocol -------------------------------------------------------------

    @property
    def per_key(self) -> int:
        return self._per_key

    @property
    def lease_ttl(self) -> float:
        return self._lease_ttl

    @property
    def redis_available(self) -> bool:
        """False while the gate is in an outage (falling back or raising)."""
        return not self._outage

    async def in_flight(self, key: str) -> int:
        """Live leases for ``key`` across every process, after this gate's pending writes land.

        While Redis does not answer: this process's own count in ``"local"`` mode, an
        :class:`~accountapi.APIConnectionError` in ``"raise"`` mode; never a Redis error.
        """
        await self._settle()
        loop = asyncio.get_running_loop()
        if not self._paused(loop):
            try:
                count = await self._eval("count", self._redis_keys(self._hash(key), "leases"), ())
            except self._redis_errors as exc:
                self._redis_failed(exc, raising=True)
            else:
                self._redis_ok()
                return int(count)
        self._redis_paused(loop)  # raise mode: the caller's APIConnectionError
        state = self._keys.get(self._hash(key))
        return await self._local.in_flight(key) + (len(state.held) if state else 0)

    async def aclose(self) -> None:
        """Stop renewing, free the slots this gate still holds, and close its own Redis client."""
        if self._closed:
            return
        self._closed = True
        for task in (self._listener, self._renewer):
            if task is not None:
                task.cancel()
        for h, state in self._keys.items():
            if state.held:
                self._pending.setdefault(h, []).extend(state.held)
                state.held.clear()
        if self._pending and self._flusher is None and not self._outage:
            self._flusher = self._spawn(self._flush())
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        for task in set(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> RedisKeyGate:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisKeyGate({self._where}, per_key={self._per_key}, lease_ttl={self._lease_ttl},"
            f" namespace={self._namespace!r}, on_redis_error={self._on_error!r})"
        )

    # -- acquiring through Redis ---------------------------------------------------------

    async def _acquire_redis(
        self,
        key: str,
        h: str,
        lease: str,
        deadline: float | None,
        max_cool_down: float | None,
    ) -> None:
        granted, ticket, cool_ms, free_left = await self._try(h, lease, 0)
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
                    await asyncio.sleep(cool_ms / 1000)
                    delay = _POLL_MIN
                    if waiters[0] is not waiter:
                        await waiter.wake.wait()
                elif waiters[0] is waiter:
                    if not waiter.wake.is_set():
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(delay * random.uniform(0.5, 1.5)):  # noqa: S311 - jitter, not cryptography
                                await waiter.wake.wait()
                    delay = _POLL_MIN if waiter.wake.is_set() else min(delay * 2, _POLL_MAX)
                else:
                    await waiter.wake.wait()
                waiter.wake.clear()
                granted, _, cool_ms, free_left = await self._try(h, lease, ticket)
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
        """One acquire script; if cancelled mid-command, drop whatever it may have taken.

        Safe for the shared cool-down: the client never yields between ``release`` and
        ``cool_down``, so a release that a 429 follows is taken by ``cool_down`` first.
        """
        # Releases of this key from this tick ride along, freed before the acquire.
        released = self._pending.pop(h, [])
        try:
            result = await self._eval(
                "acquire",
                self._redis_keys(h, "acquire"),
                (self._per_key, self._ttl_ms, lease, ticket, self._channel, h, *released),
            )
        except BaseException as exc:
            if isinstance(exc, self._redis_errors):
                self._doubt(h, [lease, *released])  # the script may run once Redis catches up
            else:
                self._spawn(self._drop(h, [lease, *released]))
            raise
        self._redis_ok()
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

    # -- background work: releases, renewals, wake-ups ----------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _settle(self) -> None:
        """Wait for the gate's own pending releases and clean-ups to reach Redis."""
        while True:
            if self._pending and self._flusher is None:
                self._flusher = self._spawn(self._flush())
            busy = {t for t in self._tasks if t is not self._listener and t is not self._renewer}
            if not busy:
                return
            await asyncio.wait(busy)

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
        calls: list[_Call] = [
            ("release", self._redis_keys(h, "cool"), (0, self._channel, h, *ids))
            for h, ids in batch.items()
        ]
        try:
            await self._eval_many(calls)
        except self._redis_errors as exc:
            for h, ids in batch.items():
                self._doubt(h, ids)
            self._redis_failed(exc, raising=False)
        else:
            self._redis_ok()

    async def _drop(self, h: str, ids: Sequence[str]) -> None:
        """Remove leases or queue places (idempotent); an outage leaves them to expire."""
        try:
            await self._eval("release", self._redis_keys(h, "cool"), (0, self._channel, h, *ids))
        except self._redis_errors as exc:
            self._doubt(h, ids)
            self._redis_failed(exc, raising=False)
        else:
            self._redis_ok()

    async def _renew_loop(self) -> None:
        """Renew every lease and queue place this gate holds; ends when it holds none.

        It must outlive any failure: a renewer that died would let every lease expire
        under requests still running, and other processes would be admitted beside them.
        """
        interval = self._lease_ttl / 3
        while True:
            await asyncio.sleep(interval)
            renewal = self._renewal()
            if renewal is None:
                self._renewer = None
                return
            # Not held back by an outage's retry interval: a lease that misses its
            # renewal expires under a running request. One small round trip a tick is
            # also how the gate learns first that Redis is back.
            try:
                await self._renew(renewal)
            except self._redis_errors as exc:
                self._redis_failed(exc, raising=False)
            except Exception:  # a bug or an odd reply: log it, keep renewing
                logger.exception("key gate: renewing leases failed; trying again")

    def _renewal(self) -> _Renewal | None:
        """What to renew now: every lease and queue place this gate holds (None: nothing)."""
        calls: list[_Call] = []
        hashes: list[str] = []
        waiting: list[tuple[str, str]] = []
        for h, state in self._keys.items():
            if not state.held and not state.waiters:
                continue
            args: list[str | int] = [self._ttl_ms, len(state.held), *state.held]
            for waiter in state.waiters:
                args += (waiter.id, waiter.ticket)
                waiting.append((h, waiter.id))
            calls.append(("renew", self._redis_keys(h, "renew"), tuple(args)))
            hashes.append(h)
        return _Renewal(hashes, calls, waiting) if calls else None

    async def _renew(self, renewal: _Renewal) -> None:
        """Send a renewal, then undo what it put back by the time it ran.

        The renewal was made before it waited for a connection and crossed the network:
        a lease released meanwhile, or a waiter that left the queue (timed out or was
        cancelled), may have been restored by it, and is dropped again now.
        """
        replies = await self._eval_many(renewal.calls)
        self._redis_ok()
        self._restored(renewal.hashes, replies)
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

    def _restored(self, hashes: Sequence[str], replies: Sequence[Any]) -> None:
        """Account for leases the renewal found missing in Redis and put back.

        Still held here: restored, so the key's count is right again (one WARNING per
        renewal that restored any, naming the possible causes). Released while the
        renewal was on its way: put back by mistake, so dropped again at once.
        """
        restored = 0
        for h, reply in zip(hashes, replies, strict=True):
            if not reply:
                continue
            state = self._keys.get(h)
            held = set(state.held) if state is not None else set()
            stale = [lease for lease in map(_text, reply) if lease not in held]
            restored += len(reply) - len(stale)
            if stale:
                self._spawn(self._drop(h, stale))
        if restored:
            logger.warning(
                "key gate: %d slot lease(s) held by running requests were missing from "
                "Redis (a restart or flush of Redis, or this process stalled for longer "
                "than lease_ttl=%ss); restored",
                restored,
                self._lease_ttl,
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
                    await pubsub.subscribe(self._channel)
                    while True:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=_LISTEN_IDLE
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
        finally:
            self._listener = None

    # -- Redis plumbing ----------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            if self._closed:
                raise ClientStateError("the key gate is closed")
            self._client = self._connect_client()
        return self._client

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        script = _SCRIPTS[name]
        # redis-py leaves execute_command unannotated; the replies are checked by the caller.
        command: Any = self._redis().execute_command
        async with self._commands:
            try:
                return await command("EVALSHA", script.sha, len(keys), *keys, *args)
            except self._no_script:
                await command("SCRIPT", "LOAD", script.source)
                return await command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _eval_many(self, calls: Sequence[_Call]) -> list[Any]:
        """Several scripts in one round trip (a non-transactional pipeline)."""
        for attempt in (1, 2):
            pipe = self._redis().pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.execute_command("EVALSHA", _SCRIPTS[name].sha, len(keys), *keys, *args)
            async with self._commands:
                results = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, self._no_script) for r in results):
                command: Any = self._redis().execute_command
                async with self._commands:
                    for name in {name for name, _, _ in calls}:
                        await command("SCRIPT", "LOAD", _SCRIPTS[name].source)
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return list(results)
        raise AssertionError("unreachable")  # pragma: no cover

    def _hash(self, key: str) -> str:
        """The key's name in Redis: 128 bits of SHA-256 over namespace and key, never the key."""
        return hashlib.sha256(f"{self._namespace}\0{key}".encode()).hexdigest()[:32]

    def _redis_keys(self, h: str, script: str) -> tuple[str, ...]:
        # The {hash tag} keeps one API key's structures in one Redis Cluster slot.
        base = f"{self._namespace}:gate:{{{h}}}:"
        leases, queue, expiry = base + "leases", base + "queue", base + "queue-expiry"
        if script == "acquire":
            return (leases, queue, expiry, base + "tickets", base + "cool")
        if script == "cool":
            return (leases, queue, expiry, base + "cool")
        if script == "renew":
            return (leases, queue, expiry, base + "tickets")
        return (leases,)

    def _new_id(self) -> str:
        return f"{self._id_prefix}:{next(self._ids):x}"

    # -- outages -----------------------------------------------------------------------

    def _paused(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True while an outage's retry interval runs: Redis is not asked. Never raises."""
        return self._outage and loop.time() < self._paused_until

    def _redis_paused(self, loop: asyncio.AbstractEventLoop) -> bool:
        """:meth:`_paused` for a caller's acquire: in raise mode, the caller's error."""
        if not self._paused(loop):
            return False
        if self._on_error == "raise":
            raise APIConnectionError(
                f"key gate unavailable: Redis at {self._where} did not answer; "
                f"trying again within {self._retry_interval}s",
                request_sent=False,
                retryable=False,
            )
        return True

    def _redis_failed(self, exc: BaseException, *, raising: bool) -> None:
        """Note an outage: one WARNING per outage, then local limits or a typed error."""
        self._paused_until = asyncio.get_running_loop().time() + self._retry_interval
        if not self._outage:
            self._outage = True
            self._convert_held = True
            logger.warning(
                "key gate: Redis at %s is unavailable (%s); %s until it answers again",
                self._where,
                _name(exc),
                "each process limits its keys on its own"
                if self._on_error == "local"
                else "calls fail with APIConnectionError",
            )
        if raising and self._on_error == "raise":
            raise APIConnectionError(
                f"key gate unavailable: Redis at {self._where} did not answer ({_name(exc)})",
                request_sent=False,
                retryable=False,
            ) from exc

    def _redis_ok(self) -> None:
        if self._outage:
            self._outage = False
            self._convert_held = False
            logger.info("key gate: Redis at %s answers again; limits are shared again", self._where)
        if self._doubtful:
            # Only ids younger than the lease TTL can still be there; drop them now rather
            # than let them block slots until they expire.
            since = asyncio.get_running_loop().time() - self._lease_ttl
            by_key: dict[str, list[str]] = {}
            for t, h, id in self._doubtful:
                if t >= since:
                    by_key.setdefault(h, []).append(id)
            self._doubtful.clear()
            for h, ids in by_key.items():
                self._spawn(self._drop(h, ids))

    def _doubt(self, h: str, ids: Sequence[str]) -> None:
        now = asyncio.get_running_loop().time()
        if len(self._doubtful) > 10_000:  # a long outage: the oldest have expired anyway
            del self._doubtful[:5_000]
        self._doubtful.extend((now, h, id) for id in ids)

    async def _acquire_local(
        self, key: str, timeout: float | None, max_cool_down: float | None = None
    ) -> None:
        """Acquire from the in-process fallback gate, counting slots still held in Redis."""
        if self._convert_held:
            self._convert_held = False
            for state in list(self._keys.values()):
                # Calls admitted through Redis are still in flight: count them locally.
                while state.held:
                    try:
                        await self._local.acquire(state.key, 0.0)
                    except GateTimeout:
                        break
                    state.held.pop()
                    self._local_held[state.key] = self._local_held.get(state.key, 0) + 1
        await self._local.acquire(key, timeout, max_cool_down=max_cool_down)
        self._local_held[key] = self._local_held.get(key, 0) + 1
        logger.debug("key gate: %s admitted by the local fallback", key_hint(key))


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _safe_url(url: str) -> str:
    """The URL without user or password, for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _name(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
