"""An in-process emulator of the Depicta account API, served on a real loopback socket.

Tests point the SDK (or a raw aiohttp client) at `Emulator.url`; the emulator keeps the
ground truth (profiles, per-key concurrency, every request it saw) and injects the
`Fault`s a test scripts, down to dropped connections and half-written bodies.
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import ssl as ssl_module
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final

import attrs
from aiohttp import web

from ._accounts import KeyState, key_hint, new_key, profile_body, user_numbers
from ._faults import Fault, error_code
from ._wire import Exchange, bearer_token, client_port, error_response, fault_answer

# The service's contract as this emulator serves it, shipped inside the package.
PACKAGED_OPENAPI: Final = os.path.join(os.path.dirname(__file__), "openapi.yaml")

__all__ = ["Emulator", "RequestRecord"]

PROFILE_PATH: Final = "/v1/account/profile"
DISMISS_PATH: Final = "/v1/account/notifications/dismiss"
OPENAPI_PATH: Final = "/openapi.yaml"
_ROUTES: Final[Mapping[str, str]] = {PROFILE_PATH: "GET", DISMISS_PATH: "POST"}

_BACKLOG: Final = 4096


def _new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One request as the emulator saw it; the key appears only as a hint.

    `status` is what was sent, or None when the connection was dropped (or the
    request was abandoned) before a status line went out.
    """

    method: str
    """The request's HTTP method."""
    path: str
    """The request's path."""
    key_hint: str | None
    """The key it carried, as a hint, or ``None`` without one."""
    authorized: bool
    """Whether the key was known to the emulator."""
    status: int | None
    """The status sent, or ``None`` when the connection was dropped first."""
    t_start: float
    """When the request arrived (the emulator's monotonic clock, seconds)."""
    headers: Mapping[str, str] = attrs.field(hash=False)
    """The request's headers, without ``Authorization``."""
    fault: str | None
    """The name of the fault applied, or ``None``."""
    request_id: str
    """The ``X-Request-Id`` the emulator answered with."""
    client_port: int | None = None
    """The client's source port: which of its connections carried the request."""


class Emulator:
    """The account API on a loopback port, with scripted faults and request accounting.

    Use as `async with Emulator() as emu:` or call `start()` and `close()`. All methods
    other than those two are synchronous and must be called from the emulator's loop.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        per_key_limit: int | None = 10,
        limit_retry_after: str = "1",
        dismiss_status: int = 204,
        latency: float = 0.0,
        openapi_path: str | os.PathLike[str] | None = PACKAGED_OPENAPI,
        shutdown_timeout: float = 0.1,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        if per_key_limit is not None and per_key_limit < 1:
            raise ValueError(f"per_key_limit must be >= 1 or None, not {per_key_limit!r}")
        if not 200 <= dismiss_status <= 299:
            raise ValueError(f"dismiss_status must be a 2xx status, not {dismiss_status!r}")
        self._host = host
        self._port = port
        self._per_key_limit = per_key_limit
        self._limit_retry_after = limit_retry_after
        self._dismiss_status = dismiss_status
        self._openapi_path = openapi_path
        self._shutdown_timeout = shutdown_timeout
        self._latency = _check_latency(latency)
        self._ssl = ssl
        self._mix: list[tuple[float, Fault]] = []
        self._random = random.Random()  # noqa: S311 - fault injection, not cryptography

        self._keys: dict[str, KeyState] = {}
        self._global_queue: deque[Fault] = deque()
        self._records: list[RequestRecord] = []
        # (token, path, authorized) -> count; holds unknown tokens too, never exposed.
        self._attempts: Counter[tuple[str, str, bool]] = Counter()
        self._limit_rejections = 0
        self._in_flight = 0  # requests of any key being handled now, and the most at once
        self._max_in_flight = 0

        self._arrival_waiters: list[asyncio.Future[None]] = []

        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        where = self._url or "not started"
        return f"<Emulator {where} keys={len(self._keys)}>"

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the running emulator, e.g. `http://127.0.0.1:54321`."""
        if self._url is None:
            raise RuntimeError("the emulator is not running; use `async with` or start()")
        return self._url

    async def start(self) -> None:
        """Bind the socket and start serving; the bound port is then in `url`."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
            # A client that goes away stops its handler, so stalls do not outlive it.
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            # A deep accept queue: a client opening hundreds of connections at once (the
            # SDK's pool is 256) must not have its handshakes dropped and retried a
            # second later, which would look like a slow service. aiohttp's default is 128.
            site = web.TCPSite(
                runner, self._host, self._port, ssl_context=self._ssl, backlog=_BACKLOG
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        scheme = "https" if self._ssl is not None else "http"
        self._url = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    async def close(self) -> None:
        """Stop serving, cut stalled responses after `shutdown_timeout`, and wait for them."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._url = None
        await runner.cleanup()
        pending = {task for task in self._handlers if not task.done()}
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self._shutdown_timeout + 1.0)

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- configuration -----------------------------------------------------------

    def add_key(
        self,
        profile: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        fault: Fault | None = None,
        latency: float | None = None,
    ) -> str:
        """Register a key and return it; `profile` is merged over `default_profile()` as is.

        `fault` is sticky: every request of the key gets it. `latency` overrides the
        emulator-wide service time for this key.
        """
        if key is None:
            key = new_key()
        elif not key or any(c.isspace() for c in key):
            raise ValueError("key must be a non-empty string without whitespace")
        if key in self._keys:
            raise ValueError(f"key {key_hint(key)} is already registered")
        self._keys[key] = KeyState(
            number=next(user_numbers),
            account_id=str(uuid.uuid4()),
            overrides=None if not profile else copy.deepcopy(dict(profile)),
            sticky=fault,
            latency=None if latency is None else _check_latency(latency),
        )
        return key

    def script(self, key: str | None, faults: Iterable[Fault]) -> None:
        """Queue one-shot faults for a key's next requests, in order (None: any key's)."""
        if key is None:
            self._global_queue.extend(faults)
            return
        state = self._state(key)
        if state.queue is None:
            state.queue = deque()
        state.queue.extend(faults)

    def set_fault_mix(self, mix: Iterable[tuple[float, Fault]], *, seed: int | None = None) -> None:
        """Give each request of a registered key a random fault: `(probability, fault)` pairs.

        Scripted and sticky faults come first; the mix applies only when neither is due.
        Probabilities must sum to at most 1; the rest of the requests are served normally.
        A `seed` makes the sequence of draws repeatable.
        """
        pairs = [(float(p), f) for p, f in mix]
        if any(p < 0 for p, _ in pairs) or sum(p for p, _ in pairs) > 1.0 + 1e-9:
            raise ValueError("fault mix probabilities must be >= 0 and sum to at most 1")
        self._mix = pairs
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography

    def set_latency(self, seconds: float) -> None:
        """Set the service time every request waits before its response (keys may override)."""
        self._latency = _check_latency(seconds)

    # -- ground truth and accounting ----------------------------------------------

    def profile(self, key: str) -> dict[str, Any]:
        """The key's current wire profile; the live dict, so a test may also edit it."""
        return self._state(key).profile

    def attempts(
        self,
        key: str,
        path: str | None = PROFILE_PATH,
        *,
        include_unauthorized: bool = False,
    ) -> int:
        """Requests seen with this key on `path` (None: any path), whatever the outcome."""
        return sum(
            count
            for (token, seen_path, authorized), count in self._attempts.items()
            if token == key
            and (path is None or seen_path == path)
            and (authorized or include_unauthorized)
        )

    async def wait_for_attempts(
        self, key: str, count: int, path: str | None = PROFILE_PATH, *, timeout: float = 5.0
    ) -> None:
        """Wait until `attempts(key, path)` reaches `count`; TimeoutError after `timeout` s.

        Lets a test act at the moment a request arrives instead of sleeping and hoping.
        """
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while self.attempts(key, path) < count:
                waiter: asyncio.Future[None] = loop.create_future()
                self._arrival_waiters.append(waiter)
                await waiter

    @property
    def records(self) -> list[RequestRecord]:
        """Every finished request since the last `reset_stats()`, in arrival order."""
        return sorted(self._records, key=lambda record: record.t_start)

    def max_in_flight(self, key: str | None = None) -> int:
        """The most requests of this key (``None``: of all keys together) the emulator was
        handling at one time."""
        if key is None:
            return self._max_in_flight
        return self._state(key).max_in_flight

    @property
    def limit_rejections(self) -> int:
        """How many 429s the per-key concurrency limit sent (scripted 429s not included)."""
        return self._limit_rejections

    def reset_stats(self) -> None:
        """Forget records, attempt counts, in-flight peaks and limit rejections."""
        self._records.clear()
        self._attempts.clear()
        self._limit_rejections = 0
        self._max_in_flight = self._in_flight
        for state in self._keys.values():
            state.max_in_flight = state.in_flight

    def _state(self, key: str) -> KeyState:
        try:
            return self._keys[key]
        except KeyError:
            raise KeyError(f"unknown key {key_hint(key)}") from None

    # -- serving -----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one request and record it, whatever happens to it."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        t_start = time.monotonic()
        request_id = _new_request_id()
        token = bearer_token(request.headers.get("Authorization"))
        state = self._keys.get(token) if token is not None else None
        exchange = Exchange()
        try:
            resp = await self._serve(request, request_id, token, state, exchange)
            if exchange.status is None and exchange.fault != "drop":
                exchange.status = resp.status
            return resp
        finally:
            if task is not None:
                self._handlers.discard(task)
            self._records.append(
                RequestRecord(
                    method=request.method,
                    path=request.path,
                    key_hint=None if token is None else key_hint(token),
                    authorized=state is not None,
                    status=exchange.status,
                    t_start=t_start,
                    headers={
                        name: value
                        for name, value in request.headers.items()
                        if name.lower() != "authorization"
                    },
                    fault=exchange.fault,
                    request_id=request_id,
                    client_port=client_port(request),
                )
            )

    async def _serve(
        self,
        request: web.Request,
        request_id: str,
        token: str | None,
        state: KeyState | None,
        exchange: Exchange,
    ) -> web.StreamResponse:
        if request.path == OPENAPI_PATH and request.method in ("GET", "HEAD"):
            return await self._openapi(request_id)
        if token is not None:
            self._attempts[token, request.path, state is not None] += 1
            waiters, self._arrival_waiters = self._arrival_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if state is None:
            if "Authorization" not in request.headers:
                message = "missing Authorization header"
            elif token is None:
                message = "malformed Authorization header; expected 'Bearer <key>'"
            else:
                message = "invalid API key"
            return error_response(401, "auth_invalid", message, request_id)

        limit = self._per_key_limit
        if limit is not None and state.in_flight >= limit:
            self._limit_rejections += 1
            return error_response(
                429,
                "rate_limited",
                f"too many concurrent requests (max {limit})",
                request_id,
                headers={"Retry-After": self._limit_retry_after},
            )

        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            fault = self._next_fault(state)
            exchange.fault = None if fault is None else fault.name
            latency = self._latency if state.latency is None else state.latency
            if latency:
                await asyncio.sleep(latency)
            if fault is None:
                return self._route(request, state, request_id)
            return await fault_answer(fault, request, state, request_id, exchange, self._route)
        finally:
            state.in_flight -= 1
            self._in_flight -= 1

    def _next_fault(self, state: KeyState) -> Fault | None:
        """The global one-shot queue first, then the key's own queue, then its sticky fault."""
        if self._global_queue:
            return self._global_queue.popleft()
        if state.queue:
            return state.queue.popleft()
        if state.sticky is not None or not self._mix:
            return state.sticky
        draw = self._random.random()
        for probability, fault in self._mix:
            if draw < probability:
                return fault
            draw -= probability
        return None

    def _route(self, request: web.Request, state: KeyState, request_id: str) -> web.Response:
        """What the real service would answer for this authorized request."""
        method = _ROUTES.get(request.path)
        if method is None:
            return error_response(404, "not_found", f"no such endpoint: {request.path}", request_id)
        if request.method != method:
            return error_response(
                405,
                error_code(405),
                f"{request.method} is not allowed on {request.path}",
                request_id,
                headers={"Allow": method},
            )
        if request.path == PROFILE_PATH:
            return web.Response(
                body=profile_body(state),
                content_type="application/json",
                headers={"X-Request-Id": request_id},
            )
        state.profile["pending_credit_notice"] = False
        if self._dismiss_status == 204:
            return web.Response(status=204, headers={"X-Request-Id": request_id})
        return web.json_response(
            {"dismissed": True},
            status=self._dismiss_status,
            headers={"X-Request-Id": request_id},
        )

    async def _openapi(self, request_id: str) -> web.Response:
        """The spec text the emulator was given, so clients can see what it serves."""
        if self._openapi_path is None:
            return error_response(404, "not_found", "no OpenAPI document configured", request_id)
        text = await asyncio.to_thread(_read_text, self._openapi_path)
        return web.Response(
            text=text, content_type="application/yaml", headers={"X-Request-Id": request_id}
        )


def _check_latency(seconds: float) -> float:
    if isinstance(seconds, bool) or not 0 <= seconds < float("inf"):
        raise ValueError(f"latency must be a finite number of seconds >= 0, not {seconds!r}")
    return float(seconds)


def _read_text(path: str | os.PathLike[str]) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()
