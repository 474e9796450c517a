"""The call path: one API call for one key, from the deadline to the decoded answer.

The client owns one `CallPath`; the account resource and the bulk engine make
every call through it and reach nothing else of the client. One call is: take a slot in
the key gate, send one attempt, map the status, and on a retryable failure let the
`Retrier` decide the waits and further attempts.

**The deadline.** ``Timeout.total`` is fixed when the call starts, and every wait comes
out of it: the queue for the key's slot, its cool-down, the backoff between attempts,
the wait for a pooled connection, connecting, and reading. Each attempt gets what is left
at the moment it is sent, so a call ends no later than its ``total`` plus the time the
event loop takes to notice.

**Secrets.** Error trackers record the locals of every frame an exception passes
through. The key travels as a `Credential` (whose ``repr`` is
its hint) and its request headers live on that object, so no frame here holds either in
a local; errors that other code raised with such frames in their traceback are re-raised
as detached copies.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import time
from asyncio import CancelledError, current_task, get_running_loop
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from multidict import CIMultiDict

from . import _telemetry
from ._call_options import CallOptions
from ._callstate import Call
from ._coalesce import ReadIdentity, SharedRead, outcome_of
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._exceptions import (
    AccountAPIError,
    APIResponseValidationError,
    APITimeoutError,
    ConfigurationError,
    RateLimitError,
)
from ._http._transport import RawResponse, request_headers
from ._keys import Credential
from ._lifecycle import Lifecycle
from ._log import log_attempt, log_joined, logger
from ._masking import refused_echo, without_key
from ._status import error_for_status
from ._telemetry import Endpoint, Telemetry, telemetry
from .gates._memory import fast_acquire
from .gates._protocol import GateTimeout, KeyCoolingDown, KeyGate

if TYPE_CHECKING:
    from yarl import URL

    from ._clock import Clock
    from ._http._transport import Transport
    from ._retry import Retrier

__all__ = ["CallPath"]

T = TypeVar("T")

_NO_KEY: Final = "no API key: pass api_key=... or set $ACCOUNTAPI_API_KEY (or $DEPICTA_API_KEY)"
# The debug switch, read once per call: one line per attempt while the ``accountapi``
# logger is enabled for DEBUG (bound here: a call pays for the check, not the lookups).
_debug_on: Final = logger.isEnabledFor
_DEBUG: Final = logging.DEBUG
# logging's own memo of isEnabledFor() answers for this logger (a dict it clears in
# place whenever any level changes): one dict lookup per call instead of a Python call;
# when it has no answer, isEnabledFor() computes (and memoises) it.
_debug_memo: Final[dict[int, bool]] = getattr(logger, "_cache", {})


class CallPath:
    """What resources need of the client: URLs, the clock, and ``request``.

    ``request`` is the untraced call path itself, or that path inside an OpenTelemetry
    span when ``opentelemetry-api`` is installed (see `accountapi._telemetry`).

    **One event loop, and an end** (`accountapi._lifecycle`): the first call binds the
    client to its event loop, and `aclose()` ends every call in progress. A call path
    made by `derive()` shares its `Lifecycle` (and the transport, gate and telemetry)
    with the one it came from.
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_default_key",
        "_endpoints",
        "_fast_acquire",
        "_gate",
        "_headers",
        "_life",
        "_retrier",
        "_retriers",
        "_telemetry",
        "_timeout",
        "_transport",
        "coalesce",
        "monotonic",
    )

    def __init__(
        self,
        *,
        transport: Transport,
        gate: KeyGate,
        retrier: Retrier,
        clock: Clock,
        timeout: Timeout,
        default_key: Credential | None,
        headers: tuple[tuple[str, str], ...] = (),
        life: Lifecycle | None = None,
        coalesce: bool = False,
    ) -> None:
        self._transport = transport
        self._gate = gate
        self._retrier = retrier
        # Shared with every call path derived from this one (the retriers share it).
        self._budget = retrier.budget
        self.coalesce = coalesce  # whether profile() joins reads in flight by default
        self._retriers: dict[int, Retrier] = {}  # per-call max_retries -> its retrier
        self._clock = clock
        self.monotonic: Callable[[], float] = clock.monotonic
        self._timeout = timeout
        self._default_key = default_key
        self._headers = headers  # the client's default_headers, checked
        # The in-process gate hands out a free slot synchronously: no coroutine to wait.
        self._fast_acquire = fast_acquire(gate)
        # Without opentelemetry-api the call path is the untraced one itself: not a
        # wrapper, not a branch per call.
        self._telemetry = telemetry()
        self._endpoints: dict[tuple[str, URL], Endpoint] = {}  # span names, attributes
        self._life = Lifecycle() if life is None else life

    def derive(
        self,
        *,
        retrier: Retrier,
        timeout: Timeout,
        default_key: Credential | None,
        headers: tuple[tuple[str, str], ...],
        coalesce: bool,
    ) -> CallPath:
        """A call path with other defaults on the same transport, gate, clock, lifecycle
        (shared reads included) and retry budget (``retrier`` is derived from this one's)."""
        return CallPath(
            transport=self._transport,
            gate=self._gate,
            retrier=retrier,
            clock=self._clock,
            timeout=timeout,
            default_key=default_key,
            headers=headers,
            life=self._life,
            coalesce=coalesce,
        )

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The default headers every call of this path sends (checked)."""
        return self._headers

    def url(self, path: str) -> URL:
        """The absolute URL of an endpoint (built once per endpoint by its resource)."""
        return self._transport.url(path)

    def _default_credential(self) -> Credential:
        """The client's default key, checked, for a call that names none."""
        if self._default_key is None:
            raise ConfigurationError(_NO_KEY)
        return self._default_key.check()

    def _with_extra_headers(
        self, key: Credential, extra: tuple[tuple[str, str], ...]
    ) -> Credential:
        """A copy of ``key`` carrying one call's ``extra_headers`` on top of its own (a
        name given again takes the call's value); the key's own headers stay as they were."""
        assert key.headers is not None  # noqa: S101 - built before this is called
        merged = CIMultiDict(key.headers)
        for name, value in extra:
            merged[name] = value
        return key.with_headers(merged)

    def _retrier_for(self, options: CallOptions | None) -> Retrier:
        if options is None or options.max_retries is None:
            return self._retrier
        retrier = self._retriers.get(options.max_retries)
        if retrier is None:
            retrier = self._retrier.with_max_retries(options.max_retries)
            if len(self._retriers) < 64:
                self._retriers[options.max_retries] = retrier
        return retrier

    async def read_shared(
        self,
        url: URL,
        parse: Callable[[RawResponse], T],
        api_key: Credential | None,
        timeout: Timeout | float | NotGiven | None,
        options: CallOptions | None,
    ) -> T:
        """A ``GET`` that joins an identical read not yet sent, or starts one others may
        join (``coalesce=True``; see `accountapi._coalesce`).

        The caller waits at most its own deadline and takes no slot in the key gate; an
        error is the caller's own copy of the read's.
        """
        life = self._life
        if get_running_loop() is not life.loop or life.closing:
            life.bind()
        key = api_key.check() if api_key is not None else self._default_credential()
        timeouts = self._timeout if timeout is NOT_GIVEN else Timeout.coerce(timeout)
        total = timeouts.total
        deadline = None if total is None else self.monotonic() + total
        retrier = self._retrier_for(options)
        identity = ReadIdentity(
            key.hint,
            (
                key.value,
                url,
                self._headers,
                () if options is None else options.headers,
                retrier,
            ),
        )
        read: SharedRead[T] | None = life.reads.get(identity)
        joined = read is not None and read.joinable()
        if read is not None and joined:
            read.join(deadline)
        else:
            read = SharedRead(identity, life.reads, deadline)
            life.reads[identity] = read
            own = CallOptions(
                None if options is None else options.max_retries,
                () if options is None else options.headers,
                shared=read,
            )
            read.task = asyncio.create_task(self._read(url, parse, key, timeouts, own))
            read.task.add_done_callback(read.landed)
        task = read.task
        assert task is not None  # noqa: S101 - set when the read was made
        try:
            if joined:
                self._joined(url, read, key)
            remaining = None if deadline is None else deadline - self.monotonic()
            if remaining is None or remaining > 0:
                await asyncio.wait((task,), timeout=remaining)
            if not task.done():
                error = APITimeoutError(
                    f"the call's deadline of {total}s passed while it waited for a shared "
                    "read of the key; the read goes on for its other callers",
                    request_sent=read.call is not None and read.call.sent > 0,
                    retryable=False,
                )
                error.key_hint = key.hint
                raise error
        finally:
            read.leave()
        return outcome_of(task)

    async def _read(
        self,
        url: URL,
        parse: Callable[[RawResponse], T],
        key: Credential,
        timeouts: Timeout,
        options: CallOptions,
    ) -> T:
        """A shared read's own call (in its own task, traced like any call)."""
        value, _ = await self.request("GET", url, parse, key, timeouts, options)
        return value

    def _endpoint(self, method: str, url: URL) -> Endpoint:
        """The span names and labels of an endpoint (made once per endpoint)."""
        endpoint = self._endpoints.get((method, url))
        if endpoint is None:
            endpoint = self._endpoints[method, url] = Endpoint(method, url)
        return endpoint

    def _joined(self, url: URL, read: SharedRead[Any], key: Credential) -> None:
        """Make a joined read visible: a DEBUG line and the ``accountapi.call.joined`` counter."""
        if logger.isEnabledFor(logging.DEBUG):
            log_joined(url.path, read.waiting, key.hint)
        if self._telemetry is not None:
            _telemetry.joined(self._endpoint("GET", url))

    async def _untraced(
        self,
        method: str,
        url: URL,
        parse: Callable[[RawResponse], T],
        api_key: Credential | None,
        timeout: Timeout | float | NotGiven | None,
        options: CallOptions | None = None,
        *,
        traced: bool = False,
    ) -> tuple[T, Call[T]]:
        """One API call for one key: gate, attempt, map status, retry, decode.

        Returns the decoded value and the `Call` (requests sent, the answer).
        Every error raised has ``attempts`` (requests sent) and ``key_hint`` set.
        """
        life = self._life
        # Once per call: each asyncio.get_running_loop() (current_task() without a loop
        # too) is a getpid() system call on Python 3.11, asyncio's check for a fork.
        loop = get_running_loop()
        if loop is not life.loop or life.closing:
            life.bind()
        key = api_key.check() if api_key is not None else self._default_credential()
        if key.headers is None:
            # Once per key, kept on it: never in a local (its repr shows the key).
            key.headers = request_headers(key.value, self._headers)
        if options is not None and options.headers:
            key = self._with_extra_headers(key, options.headers)
        timeouts = self._timeout if timeout is NOT_GIVEN else Timeout.coerce(timeout)
        total = timeouts.total
        task = current_task(loop)
        call = Call(
            key,
            method,
            url,
            parse,
            timeouts,
            None if total is None else self.monotonic() + total,
            task,
        )
        if options is not None and options.shared is not None:
            options.shared.started(call)
        if traced:  # inside _in_span: each request sent gets a span
            attempt = self._attempt_in_span
        else:
            debug = _debug_memo.get(_DEBUG)
            if debug is None:
                debug = _debug_on(_DEBUG)
            attempt = self._logged_attempt if debug else self._attempt
        if task is not None:
            life.running[task] = task.cancelling()
        try:
            # The success path is this bare await and a refill of the retry budget when it
            # is below capacity; retries start only after a failure.
            try:
                value = await attempt(call, 1)
                budget = self._budget
                if budget is not None and budget.level < budget.capacity:
                    budget.give_back(budget.refill)
                return value, call
            except AccountAPIError as exc:
                exc.attempts = call.sent
                retrier = self._retrier_for(options)
                if not retrier.should_retry(exc):
                    exc.key_hint = key.hint
                    raise
                first = exc
            try:
                value = await retrier.retry(
                    functools.partial(attempt, call),
                    first,
                    deadline=lambda: call.deadline,
                    key_hint=key.hint,
                )
            except AccountAPIError as exc:
                exc.attempts = call.sent
                exc.key_hint = key.hint
                raise
            return value, call
        except CancelledError:
            ended = None if task is None else life.ended_by_close(task, call)
            if ended is None:
                raise
            failure = ended
        finally:
            if task is not None:
                life.leave(task)
        # Raised outside the except block: the cancellation's frames (aiohttp's among
        # them, holding the request headers) are not chained to the error.
        raise failure

    async def aclose(self) -> None:
        """End every call in progress with [`ClientStateError`][accountapi.ClientStateError] and refuse new ones
        (see `Lifecycle.close()`)."""
        await self._life.close()

    async def _logged_attempt(self, call: Call[T], number: int) -> T:
        """`_attempt()` with one DEBUG line when it ends (the debug switch is on)."""
        started = self.monotonic()
        try:
            value = await self._attempt(call, number)
        except AccountAPIError as exc:
            elapsed = self.monotonic() - started
            log_attempt(call.method, call.url.path, number, elapsed, call.key.hint, None, exc)
            raise
        elapsed = self.monotonic() - started
        answer = (
            call.answer
        )  # a 2xx is not masked on the way (errors are): a server may echo the key
        log_attempt(
            call.method,
            call.url.path,
            number,
            elapsed,
            call.key.hint,
            None if answer is None else without_key(answer, call.key),
            None,
        )
        return value

    async def _attempt(self, call: Call[T], number: int) -> T:
        """Attempt ``number`` of ``call``: a slot in the key gate, one request, its status."""
        key = call.key
        deadline = call.deadline
        remaining = None if deadline is None else deadline - self.monotonic()
        if remaining is not None and remaining <= 0:
            raise APITimeoutError(
                f"the call's deadline of {call.timeouts.total}s passed before attempt {number}",
                request_sent=False,
                retryable=False,
            )
        # The in-process gate admits synchronously when the key has a free slot.
        try_acquire = self._fast_acquire
        queued = try_acquire is None or not try_acquire(key.value)
        if queued:
            await self._wait_for_slot(call, remaining)
        gate = self._gate
        try:
            # A shared read's deadline moves when a caller joins it during the wait.
            if queued and (deadline := call.deadline) is not None:
                # The slot may have taken a while: the attempt gets what is left now.
                remaining = deadline - self.monotonic()
                if remaining <= 0:
                    raise APITimeoutError(
                        f"the call's deadline of {call.timeouts.total}s passed while it "
                        "waited for a request slot",
                        request_sent=False,
                        retryable=False,
                    )
            transport = self._transport
            # ClientStateError once the client is closed. The loop: the one the call
            # started in, checked then (this attempt runs in the same task).
            session = transport.session(self._life.loop)
            call.sent += 1
            raw = await transport.request(
                session, call.method, call.url, key, call.timeouts, remaining, call.task
            )
            if 200 <= raw.status < 300:
                call.answer = raw
                try:
                    return call.parse(raw)
                except APIResponseValidationError:
                    masked = without_key(raw, key)
                    if masked is raw:
                        raise
                # Raised outside the except block: the error decoded from the answer as
                # sent (the key in its message or request id) is not chained to it.
                raise refused_echo(call.parse, masked)
            raw = without_key(raw, key)
            error = error_for_status(
                raw.status,
                raw.headers,
                raw.body,
                now=self._clock.time(),
                truncated=raw.truncated,
                problem=raw.problem,
            )
            if raw.status == 429 and error.retry_after is not None:
                # One cool-down for the key: queued and new calls wait it out too. It
                # starts before the slot is released, so no other caller (in any
                # process, with a shared gate) slips in between. Without a usable
                # Retry-After each call backs off on its own jittered schedule.
                await gate.cool_down(key.value, error.retry_after)
            raise error
        finally:
            gate.release(key.value)

    async def _wait_for_slot(self, call: Call[Any], remaining: float | None) -> None:
        """Queue in the key gate; its refusals become SDK errors. Holds no slot on error."""
        failure: AccountAPIError | None = None
        try:
            while True:
                asked = call.deadline
                try:
                    await self._gate.acquire(
                        call.key.value, remaining, max_cool_down=self._retrier.policy.max_wait
                    )
                    break
                except KeyCoolingDown:
                    raise
                except GateTimeout:
                    # A shared read queued here runs until its latest caller's deadline,
                    # which a caller joining it during the wait may have moved: it queues
                    # again for what is left. Only then: a gate that refuses at once (a
                    # custom one, "queue full") must not be asked again and again.
                    deadline = call.deadline
                    if deadline == asked:
                        raise
                    remaining = None if deadline is None else deadline - self.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise
        except KeyCoolingDown as exc:
            failure = RateLimitError(
                f"the key is cooling down after a 429 for {exc.retry_after:.3f}s more, "
                "longer than this call may wait; nothing was sent",
                status=429,
                retry_after=exc.retry_after,
            )
        except GateTimeout:
            failure = APITimeoutError(
                f"no request slot for the key within the call's deadline of {call.timeouts.total}s",
                request_sent=False,
                retryable=False,
            )
        except AccountAPIError as exc:  # a shared gate's own failure
            failure = copy.copy(exc)  # detached: its frames hold the raw key
        if failure is not None:
            raise failure

    def request(
        self,
        method: str,
        url: URL,
        parse: Callable[[RawResponse], T],
        api_key: Credential | None,
        timeout: Timeout | float | NotGiven | None,
        options: CallOptions | None = None,
    ) -> Awaitable[tuple[T, Call[T]]]:
        """One API call: `_untraced()` itself while no OpenTelemetry SDK records (its
        coroutine, returned: no extra frame per call), else the call inside a span
        (`_in_span()`). Resources and the bulk engine make every call through here."""
        tel = self._telemetry
        if tel is None or not tel.active():
            return self._untraced(method, url, parse, api_key, timeout, options)
        return self._in_span(tel, method, url, parse, api_key, timeout, options)

    async def _in_span(
        self,
        tel: Telemetry,
        method: str,
        url: URL,
        parse: Callable[[RawResponse], T],
        api_key: Credential | None,
        timeout: Timeout | float | NotGiven | None,
        options: CallOptions | None,
    ) -> tuple[T, Call[T]]:
        """One call in a span, each request it sends in a span of its own
        (`_attempt_in_span()`), with the durations, attempts and statuses recorded.

        Telemetry never fails a call: the `Telemetry` methods called here log
        whatever OpenTelemetry (or a processor, exporter or view of the application's)
        raises and return.
        """
        endpoint = self._endpoint(method, url)
        monotonic = self.monotonic
        started = monotonic()
        scope = tel.start_call(endpoint)
        try:
            value, call = await self._untraced(
                method, url, parse, api_key, timeout, options, traced=True
            )
        except BaseException as exc:
            tel.end_call(scope, monotonic() - started, None, exc)
            raise
        tel.end_call(scope, monotonic() - started, call, None)
        return value, call

    async def _attempt_in_span(self, call: Call[T], number: int) -> T:
        """An attempt of a traced call; the request it sent (if it got that far) is
        recorded as a ``CLIENT`` span and in ``http.client.request.duration``."""
        attempt = self._logged_attempt if logger.isEnabledFor(logging.DEBUG) else self._attempt
        sent = call.sent
        started_ns = time.time_ns()
        started = self.monotonic()
        try:
            value = await attempt(call, number)
        except BaseException as exc:
            if call.sent != sent and self._telemetry is not None:
                self._telemetry.request_ended(call, started_ns, self.monotonic() - started, exc)
            raise
        if self._telemetry is not None:
            self._telemetry.request_ended(call, started_ns, self.monotonic() - started, None)
        return value

    def __repr__(self) -> str:
        return f"CallPath(base_url={str(self._transport.base_url)!r})"
