"""The Lua scripts of the Redis key gate, and the one place that runs them.

Every per-key structure lives under one ``{hash tag}`` (`redis_keys()`), so each
script touches one Redis Cluster slot; the gate still supports one primary only (see
[`RedisKeyGate`][accountapi.gates.RedisKeyGate]). API keys never reach Redis: `key_hash()` names
each by a truncated SHA-256 of namespace and key.

The scripts implement the lease/ticket protocol that `accountapi.gates._lease`
drives; what each takes and returns is written above it. `ScriptRunner` runs them
with ``EVALSHA`` (loading a script on the first ``NOSCRIPT``), one at a time or several
in one round trip, at most ``max_commands`` at once per gate.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["SCRIPTS", "Call", "ScriptRunner", "keeping_cancellation", "key_hash", "redis_keys"]

T = TypeVar("T")

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
Call = tuple[str, Sequence[str], Sequence[str | int]]


class _Script:
    """A Lua script and its SHA1, run with EVALSHA (loaded on the first NOSCRIPT)."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        # SHA1 is what Redis names scripts by; it is not used for security here.
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


SCRIPTS: Final = {
    name: _Script(src)
    for name, src in (
        ("acquire", _ACQUIRE),
        ("release", _RELEASE),
        ("renew", _RENEW),
        ("count", _COUNT),
    )
}


def key_hash(namespace: str, key: str) -> str:
    """The key's name in Redis: 128 bits of SHA-256 over namespace and key, never the key."""
    return hashlib.sha256(f"{namespace}\0{key}".encode()).hexdigest()[:32]


def redis_keys(namespace: str, h: str, script: str) -> tuple[str, ...]:
    """The KEYS of ``script`` for the API key hashed ``h``."""
    # The {hash tag} keeps one API key's structures in one Redis Cluster slot.
    base = f"{namespace}:gate:{{{h}}}:"
    leases, queue, expiry = base + "leases", base + "queue", base + "queue-expiry"
    if script == "acquire":
        return (leases, queue, expiry, base + "tickets", base + "cool")
    if script == "release":
        return (leases, queue, expiry, base + "cool")
    if script == "renew":
        return (leases, queue, expiry, base + "tickets")
    return (leases,)


async def keeping_cancellation(command: Awaitable[T]) -> T:
    """Await a redis-py call; a cancellation it dropped is raised once it returns.

    On Python 3.11 redis-py writes every command through `asyncio.wait_for()`, which
    returns the result and drops a cancellation that arrives in the tick the write
    completes (cpython#86296, gone in 3.12). The task still counts the request in
    `Task.cancelling()`, so a count higher after the call than before it is a lost
    cancellation: a caller's, or the deadline of `asyncio.timeout()` around an acquire,
    which would otherwise poll on past its timeout for as long as no slot frees.
    A command that fails after dropping one raises the cancellation too (the error as
    its cause): a Redis error would send a cancelled acquire to the outage fallback.
    """
    task = asyncio.current_task()
    requested = task.cancelling() if task is not None else 0
    try:
        result = await command
    except Exception as exc:
        if task is not None and task.cancelling() > requested:
            raise asyncio.CancelledError from exc
        raise
    if task is not None and task.cancelling() > requested:
        raise asyncio.CancelledError
    return result


class ScriptRunner:
    """Runs the scripts on a Redis client made on first use, loading them when missing."""

    __slots__ = ("_commands", "_no_script", "_redis")

    def __init__(
        self, redis: Callable[[], Redis], no_script: type[Exception], max_commands: int
    ) -> None:
        self._redis = redis
        self._no_script = no_script
        # At most this many commands (so connections) at once per gate: a burst of calls
        # then waits here, in the process, instead of opening a connection each and
        # having slow handshakes mistaken for a slow Redis.
        self._commands = asyncio.Semaphore(max_commands)

    async def eval(self, name: str, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        script = SCRIPTS[name]
        # redis-py leaves execute_command unannotated; the replies are checked by the caller.
        command: Any = self._redis().execute_command
        async with self._commands:
            try:
                return await keeping_cancellation(
                    command("EVALSHA", script.sha, len(keys), *keys, *args)
                )
            except self._no_script:
                await keeping_cancellation(command("SCRIPT", "LOAD", script.source))
                return await keeping_cancellation(
                    command("EVALSHA", script.sha, len(keys), *keys, *args)
                )

    async def eval_many(self, calls: Sequence[Call]) -> list[Any]:
        """Several scripts in one round trip (a non-transactional pipeline)."""
        for attempt in (1, 2):
            pipe = self._redis().pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.execute_command("EVALSHA", SCRIPTS[name].sha, len(keys), *keys, *args)
            async with self._commands:
                results = await keeping_cancellation(pipe.execute(raise_on_error=False))
            if attempt == 1 and any(isinstance(r, self._no_script) for r in results):
                command: Any = self._redis().execute_command
                async with self._commands:
                    for name in {name for name, _, _ in calls}:
                        await keeping_cancellation(command("SCRIPT", "LOAD", SCRIPTS[name].source))
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return list(results)
        raise AssertionError("unreachable")  # pragma: no cover
