"""The per-key gate shared through Redis: one limit and one cool-down per key across processes.

[`MemoryKeyGate`][accountapi.gates.MemoryKeyGate] keeps the service's 10-per-key limit inside one
process; eight workers using the same key would still send 80 requests at once.
[`RedisKeyGate`][accountapi.gates.RedisKeyGate] keeps the count in Redis instead, so every process (and machine)
using the same Redis and namespace shares it.

Two parts: the lease/ticket protocol in Redis (`accountapi.gates._lease`, its Lua
scripts in `accountapi.gates._scripts`), and here [`RedisKeyGate`][accountapi.gates.RedisKeyGate], the public
gate, which decides in one place what happens while Redis does not answer (for ``socket_timeout``, or at all): with
``on_redis_error="local"`` each process limits its keys on its own through a
[`MemoryKeyGate`][accountapi.gates.MemoryKeyGate] (one WARNING per outage); with ``"raise"`` the calls
that need Redis fail with [`APIConnectionError`][accountapi.APIConnectionError]. Either way the
shared part keeps renewing, and the first answer from Redis ends the outage.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from accountapi._exceptions import APIConnectionError, ClientStateError, ConfigurationError
from accountapi._keys import key_hint

from ._lease import _Health, _name, _SharedGate
from ._memory import MemoryKeyGate
from ._protocol import MAX_COOL_DOWN, GateTimeout
from ._scripts import ScriptRunner

if TYPE_CHECKING:
    from redis.asyncio import Redis


__all__ = ["RedisKeyGate"]

logger: Final = logging.getLogger("accountapi")

# Redis commands one gate runs at once (each on its own pooled connection).
_MAX_COMMANDS: Final = 8


class RedisKeyGate(_Health):
    """A [`KeyGate`][accountapi.gates.KeyGate] whose per-key limit and 429 cool-down live in Redis.

    Pass it to every worker's client: ``AccountClient(key_gate=RedisKeyGate(url))``.
    All processes that use the same Redis database and ``namespace`` share one limit of
    ``per_key`` requests in flight per API key and one cool-down per key. Use one gate per
    event loop, and `aclose()` it when done (it frees the slots it still holds).

    - ``url``: the Redis to use (``redis://``, ``rediss://`` or ``unix://``), ignored when
      ``client`` is given.
    - ``per_key``: requests in flight per key across every process (the service allows 10).
    - ``lease_ttl``: seconds after which the slots of a worker that died are freed; a live
      gate renews its leases every ``lease_ttl / 3``. At least 0.5.
    - ``namespace``: prefix of every Redis key and channel; gates share limits only
      within one namespace.
    - ``on_redis_error``: ``"local"`` (default) falls back to an in-process limit while
      Redis is unreachable, logging one WARNING per outage; ``"raise"`` makes each call
      that needs Redis during an outage fail with [`APIConnectionError`][accountapi.APIConnectionError]
      (``request_sent=False``) instead.
    - ``socket_timeout``: how long one Redis command may take before Redis counts as
      unavailable, so a slow Redis cannot stall calls (default 0.25 s).
    - ``retry_interval``: during an outage, how long calls skip Redis before it is tried again.
    - ``client``: a ``redis.asyncio.Redis`` to use instead of creating one (for example
      ``Sentinel(...).master_for(name)``); it is not closed by `aclose()`, and its
      own timeouts and retries apply. Once `aclose()` has returned the gate starts no
      further command on it. A Redis Cluster client is refused
      ([`ConfigurationError`][accountapi.ConfigurationError]): the gate needs one primary.
    """

    __slots__ = (
        "_adopting",
        "_client",
        "_closed",
        "_closing",
        "_connect_client",
        "_dual",
        "_hand_over",
        "_lease_ttl",
        "_local",
        "_local_held",
        "_local_waiting",
        "_namespace",
        "_on_error",
        "_outage",
        "_owns_client",
        "_paused_until",
        "_per_key",
        "_redis_errors",
        "_retry_interval",
        "_shared",
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
        self._namespace = namespace
        self._on_error = on_redis_error
        self._retry_interval = float(retry_interval)
        self._redis_errors: tuple[type[Exception], ...] = (RedisError, builtins.ConnectionError)
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
        self._shared = _SharedGate(
            redis=self._redis,
            scripts=ScriptRunner(self._redis, NoScriptError, _MAX_COMMANDS),
            redis_errors=self._redis_errors,
            health=self,
            per_key=per_key,
            lease_ttl=self._lease_ttl,
            namespace=namespace,
            retry_interval=self._retry_interval,
        )
        self._local = MemoryKeyGate(per_key)
        self._local_held: dict[str, int] = {}  # slots the local gate gave, by key
        # Tasks waiting in the local gate: the close cancels them (each then raises
        # ClientStateError), keyed to task.cancelling() when the wait began.
        self._local_waiting: dict[asyncio.Task[Any], int] = {}
        # Redis slots of running calls that an outage's local gate also counts, by key;
        # they stay in Redis (renewed, restored if lost) and are released in both.
        self._dual: dict[str, int] = {}
        self._outage = False
        self._paused_until = 0.0
        self._hand_over = False  # at the next local acquire: count Redis-held slots locally
        self._adopting = False  # an outage's end is writing the local gate's calls to Redis
        self._closed = False
        self._closing: asyncio.Task[None] | None = None  # the close, once aclose() began it

    # -- the KeyGate protocol ----------------------------------------------------------

    async def acquire(
        self, key: str, timeout: float | None, *, max_cool_down: float | None = None
    ) -> None:
        """Wait for a slot for ``key`` in Redis and for its shared cool-down to pass.

        Raises [`GateTimeout`][accountapi.gates.GateTimeout] when that cannot happen within
        ``timeout`` seconds, and [`KeyCoolingDown`][accountapi.gates.KeyCoolingDown] at once if a
        cool-down outlasts ``timeout`` or ``max_cool_down``. A cancelled acquire leaves
        neither a lease nor a place in the queue behind.
        """
        if self._closed:
            raise ClientStateError("the key gate is closed")
        loop = asyncio.get_running_loop()
        cause: BaseException | None = None
        if not self._paused(loop):
            started = loop.time()
            try:
                await self._shared.acquire(key, timeout, max_cool_down)
                return
            except self._redis_errors as exc:
                if self._closed:  # closed while its script was on its way: not admitted
                    raise ClientStateError("the key gate is closed") from exc
                self.failed(exc)
                cause = exc
            if timeout is not None:
                timeout = max(timeout - (loop.time() - started), 0.0)
        self._during_outage(cause)
        await self._acquire_local(key, timeout, max_cool_down)

    def release(self, key: str) -> None:
        """Give back a slot of ``key``; never raises, never waits.

        A slot the local fallback gave goes back to it; a Redis slot is freed on the next
        event-loop tick, from a task the gate owns, so it happens even when the caller is
        being cancelled.
        """
        if _take_one(self._dual, key):
            self._local.release(key)
            self._shared.release(key)
        elif _take_one(self._local_held, key):
            self._local.release(key)
        else:
            self._shared.release(key)

    async def cool_down(self, key: str, seconds: float) -> None:
        """Hold back every process's requests for ``key`` for ``seconds``; never raises.

        During an outage (or if Redis fails now) the cool-down holds in this process.
        """
        seconds = min(max(seconds, 0.0), MAX_COOL_DOWN)
        ms = math.ceil(seconds * 1000)
        if ms <= 0:
            return
        if not self._closed and not self._paused(asyncio.get_running_loop()):
            try:
                await self._shared.cool_down(key, ms)
                return
            except self._redis_errors as exc:
                self.failed(exc)
        self._local._cool_down_nowait(key, seconds)

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
        [`APIConnectionError`][accountapi.APIConnectionError] in ``"raise"`` mode; never a Redis error.
        A closed gate raises [`ClientStateError`][accountapi.ClientStateError].
        """
        if self._closed:
            raise ClientStateError("the key gate is closed")
        await self._shared.settle()
        cause: BaseException | None = None
        if not self._paused(asyncio.get_running_loop()):
            try:
                return await self._shared.count(key)
            except self._redis_errors as exc:
                self.failed(exc)
                cause = exc
        self._during_outage(cause)
        dual = self._dual.get(key, 0)  # counted by both
        return await self._local.in_flight(key) + self._shared.held(key) - dual

    async def aclose(self) -> None:
        """Stop renewing, free the slots this gate still holds, and close its own Redis client.

        Acquires still in progress end with [`ClientStateError`][accountapi.ClientStateError],
        those whose Redis command hangs too. Bounded (about 6 s) even if Redis stops
        answering: what could not be freed by then is logged (one WARNING) and left to
        expire in Redis within ``lease_ttl``. Once it has returned the gate starts no
        further Redis command, on its own client (closed) or on one passed as ``client``.

        Every caller returns once the gate is closed. The close runs in a task of its
        own: a caller cancelled meanwhile (its timeout) stops waiting for it, not the
        close, which would otherwise leave its renewer holding the slots for ever. If
        that task is cancelled itself (the event loop ending before the close did), it
        still closes its own Redis client.
        """
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(self._close())
            self._closing.add_done_callback(self._close_ended)  # a cancelled caller never reads it
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            for task in self._local_waiting:  # each raises ClientStateError (_wait_local)
                task.cancel()
            await self._shared.close(free_slots=not self._outage)
        finally:
            # From here on a command of this gate finds no client (ClientStateError) and
            # is not sent: a task that outlived the close leaves its ids to expire.
            client, self._client = self._client, None
            if self._owns_client and client is not None:
                await client.aclose()

    def _close_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            task.exception()  # seen (each awaiting caller still gets it)
            return
        if self._owns_client and self._client is not None:
            # Cancelled before it began (the event loop ended as aclose() started it):
            # its client is closed in a task of its own, which the loop's end does not
            # cancel, as it did not exist when the loop cancelled its tasks.
            client, self._client = self._client, None
            logger.warning(
                "key gate: its close was cancelled before it began (the event loop ended?); "
                "closing its Redis connections now, and leaving its slots to expire"
            )
            closing = asyncio.get_running_loop().create_task(client.aclose())
            closing.add_done_callback(_retrieve)

    async def __aenter__(self) -> RedisKeyGate:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisKeyGate({self._where}, per_key={self._per_key}, lease_ttl={self._lease_ttl},"
            f" namespace={self._namespace!r}, on_redis_error={self._on_error!r})"
        )

    # -- outages: the one place that decides ------------------------------------------------

    def _during_outage(self, cause: BaseException | None) -> None:
        """A call needs Redis while it does not answer: in ``"raise"`` mode it fails here;
        in ``"local"`` mode it goes on, limited by this process alone."""
        if self._on_error == "raise":
            did_not = f"key gate unavailable: Redis at {self._where} did not answer"
            raise APIConnectionError(
                f"{did_not} ({_name(cause)})"
                if cause is not None
                else f"{did_not}; trying again within {self._retry_interval}s",
                request_sent=False,
                retryable=False,
            ) from cause

    def _paused(self, loop: asyncio.AbstractEventLoop) -> bool:
        """True while an outage's retry interval runs, or while the end of an outage
        writes the local gate's running calls to Redis: calls do not ask Redis."""
        return self._outage and (self._adopting or loop.time() < self._paused_until)

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer: an outage begins (one WARNING) or goes on; a closing gate
        announces none (its close says what it could not free)."""
        if self._closed:
            return
        self._paused_until = asyncio.get_running_loop().time() + self._retry_interval
        if self._outage:
            return
        self._outage = True
        self._hand_over = True
        logger.warning(
            "key gate: Redis at %s is unavailable (%s); %s until it answers again",
            self._where,
            _name(exc),
            "each process limits its keys on its own"
            if self._on_error == "local"
            else "calls that need it fail with APIConnectionError",
        )

    def answered(self) -> None:
        """Redis answered: the outage ends once the calls that the local gate admitted,
        and that still run, are leases in Redis; until then new calls stay local, so
        none is admitted beside them beyond the shared limit."""
        if not self._outage or self._adopting or self._closed:
            return
        if not self._adopt_local():
            self._end_outage()
            return
        self._adopting = True
        self._shared.spawn(self._write_adopted())

    def _adopt_local(self) -> bool:
        """Hand the local gate's running calls to Redis as leases; False if none to write."""
        if not self._local_held:
            return self._shared.unwritten
        for key, count in self._local_held.items():
            self._shared.adopt(key, count)
            self._dual[key] = self._dual.get(key, 0) + count
        self._local_held.clear()
        return True

    async def _write_adopted(self) -> None:
        try:
            # Calls the local gate admits while a write is on its way are adopted and
            # written in turn; each round trip leaves fewer, the local limit bounds them.
            while self._adopt_local():
                await self._shared.write_adopted()
        except ClientStateError:
            return  # it outlived the close: the leases it wrote expire
        except self._redis_errors as exc:
            self.failed(exc)  # the outage goes on; the next answer tries again
            return
        finally:
            self._adopting = False
        self._end_outage()

    def _end_outage(self) -> None:
        self._outage = False
        self._hand_over = False
        logger.info("key gate: Redis at %s answers again; limits are shared again", self._where)

    async def _acquire_local(
        self, key: str, timeout: float | None, max_cool_down: float | None = None
    ) -> None:
        """Acquire from the in-process fallback gate, counting slots still held in Redis."""
        if self._hand_over:
            self._hand_over = False
            # Calls admitted through Redis are still in flight: count them locally too.
            for held_key, count in self._shared.held_counts().items():
                for _ in range(count - self._dual.get(held_key, 0)):
                    try:
                        await self._local.acquire(held_key, 0.0)
                    except GateTimeout:
                        break
                    self._dual[held_key] = self._dual.get(held_key, 0) + 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._wait_local(key, timeout, max_cool_down)
        if not self._outage:
            # Redis came back while this call waited here: the slot it got is not in
            # Redis, so it queues there instead, with what is left of its timeout.
            self._local.release(key)
            if timeout is not None:
                timeout = max(timeout - (loop.time() - started), 0.0)
            await self.acquire(key, timeout, max_cool_down=max_cool_down)
            return
        self._local_held[key] = self._local_held.get(key, 0) + 1
        logger.debug("key gate: %s admitted by the local fallback", key_hint(key))

    async def _wait_local(
        self, key: str, timeout: float | None, max_cool_down: float | None
    ) -> None:
        """The local gate's acquire, ended with ClientStateError if the gate closes meanwhile."""
        if self._closed:
            raise ClientStateError("the key gate is closed")
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - acquire() always runs in a task
            await self._local.acquire(key, timeout, max_cool_down=max_cool_down)
            return
        self._local_waiting[task] = task.cancelling()
        try:
            await self._local.acquire(key, timeout, max_cool_down=max_cool_down)
        except asyncio.CancelledError:
            began = self._local_waiting.pop(task)
            # The close's cancel, and only it: the caller's own stays a cancellation.
            if self._closed and task.uncancel() <= began:
                raise ClientStateError("the key gate is closed") from None
            raise
        finally:
            self._local_waiting.pop(task, None)
        if self._closed:  # admitted as the gate closed: not a slot of a closed gate
            self._local.release(key)
            raise ClientStateError("the key gate is closed")

    # -- Redis plumbing ----------------------------------------------------------------

    def _redis(self) -> Redis:
        if self._client is None:
            if self._closed:
                raise ClientStateError("the key gate is closed")
            self._client = self._connect_client()
        return self._client


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a task's exception as seen (each awaiting caller still gets it)."""
    if not task.cancelled():
        task.exception()


def _take_one(counts: dict[str, int], key: str) -> bool:
    """Take one from ``counts[key]`` if there is one (the entry goes at zero)."""
    count = counts.get(key)
    if not count:
        return False
    if count == 1:
        del counts[key]
    else:
        counts[key] = count - 1
    return True


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
