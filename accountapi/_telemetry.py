"""OpenTelemetry spans and metrics for every call, when ``opentelemetry-api`` is installed.

Nothing here is configured by the user: spans go to the global tracer provider and
metrics to the global meter provider, the way OpenTelemetry libraries are meant to
work. With only ``opentelemetry-api`` installed those are no-ops; once the application
sets up ``opentelemetry-sdk`` (or an agent does) the SDK's spans appear next to its own.

What one call records, following the stable HTTP client semantic conventions:

- an ``INTERNAL`` span for the whole call (the wait for a slot, every attempt and every
  backoff), named ``"accountapi {method} {url.template}"``, with each retry as a span
  event ``accountapi.retry``;
- under it, one ``CLIENT`` span per request sent, named ``"{method} {url.template}"``,
  with ``url.full``, ``server.address``, ``server.port``, ``http.request.method``,
  ``http.response.status_code``, ``error.type`` and, on a request sent again,
  ``http.request.resend_count``: what the conventions ask of each physical request, so
  a backend's service map and latency views read them as any HTTP client's;
- the histogram ``http.client.request.duration`` per request (the conventions' name,
  attributes and buckets), and the SDK's own ``accountapi.call.duration`` per call and
  counters ``accountapi.call.retries`` (by cause) and ``accountapi.call.rate_limited``.

While a call's span is current, HTTP instrumentation underneath it is suppressed (the
context key OpenTelemetry's instrumentations check), so ``opentelemetry-instrumentation-
aiohttp-client`` does not record a second span per request.

Under overload (README "Under overload"): the counters
``accountapi.retry_budget.refused`` (retries a spent budget refused, by cause) and
``accountapi.call.joined`` (``profile()`` calls that joined a read in flight instead of
sending their own), and the gauge ``accountapi.retry_budget.level`` (tokens left in each
live budget, labelled by the budget's number in the process).

No key, hint or request header is ever an attribute, event or label: labels are the
method, the endpoint, the server, and a status code or error class.

Telemetry never fails a call: everything that reaches into the application's provider,
processors, exporters or views runs under a guard that logs (``telemetry_failed``) and
goes on.

Cost. The import is attempted once, when the first client is made. When it fails the
client binds its untraced call path and this module costs nothing per call. With the
API installed but no SDK set up (common: many libraries depend on the API), each call
compares the global providers with the ones it last saw and, while they are the API's
own no-ops, takes the untraced path. See ``python -m benchmarks.instructions --only
sdk,sdk-no-otel,sdk-otel-sdk``.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any, Final

from ._budget import live_budgets
from ._exceptions import AccountAPIError, APIStatusError
from ._version import __version__

if TYPE_CHECKING:
    from types import ModuleType

    from yarl import URL

    from ._callstate import Call
    from ._events import RetryEvent

__all__ = [
    "CallScope",
    "Endpoint",
    "Telemetry",
    "error_type",
    "retried",
    "telemetry",
    "telemetry_failed",
]

SCOPE: Final = "accountapi"
logger: Final = logging.getLogger("accountapi")

# http.client.request.duration's advised bucket boundaries (seconds), from the conventions.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)

# The endpoint of the traced call in progress in this task, for the request spans and
# the retry counters (the retry loop knows the attempt, not the endpoint).
call_endpoint: Final[contextvars.ContextVar[Endpoint | None]] = contextvars.ContextVar(
    "accountapi_call_endpoint", default=None
)

_public_names: dict[type, str] = {}


def public_name(cls: type) -> str:
    """A class's name where its package exports it: ``accountapi.APITimeoutError``,
    ``asyncio.CancelledError``, ``TimeoutError`` (not ``asyncio.exceptions.…``)."""
    name = _public_names.get(cls)
    if name is None:
        module, qualname = cls.__module__, cls.__qualname__
        package = module.partition(".")[0]
        if module == "builtins":
            name = qualname
        elif qualname in getattr(sys.modules.get(package), "__all__", ()) and (
            getattr(sys.modules[package], qualname, None) is cls
        ):
            # Only a name the package exports: reading a deprecated alias (such as
            # accountapi.GateTimeout, now in accountapi.gates) would warn.
            name = f"{package}.{qualname}"
        else:
            name = f"{module}.{qualname}"
        if len(_public_names) < 256:
            _public_names[cls] = name
    return name


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of a failure: the HTTP status code, else the exception's public
    fully qualified class name (as the conventions ask)."""
    if isinstance(exc, APIStatusError):
        return str(exc.status)
    return public_name(type(exc))


class Endpoint:
    """One method and URL's span names and attributes, built once per endpoint."""

    __slots__ = ("call_name", "labels", "request_attributes", "request_labels", "request_name")

    def __init__(self, method: str, url: URL) -> None:
        template = url.path
        self.call_name = f"accountapi {method} {template}"
        self.request_name = f"{method} {template}"
        # The call span's attributes, and the labels of the SDK's own metrics.
        self.labels: dict[str, Any] = {
            "http.request.method": method,
            "url.template": template,
            "server.address": url.host or "",
            "server.port": url.port or 0,
        }
        # A request span's: url.full is the base URL and path; the base URL can carry
        # no credentials, query or fragment (_urls.check_base_url), and a key never
        # travels in a URL.
        self.request_attributes: dict[str, Any] = {**self.labels, "url.full": str(url)}
        # http.client.request.duration's: the required ones and two opt-in ones of
        # low cardinality (the SDK has two endpoints).
        self.request_labels: dict[str, Any] = {**self.labels, "url.scheme": url.scheme}


class CallScope:
    """What `Telemetry.start_call()` attached and `Telemetry.end_call()` undoes."""

    __slots__ = ("context_token", "endpoint", "endpoint_token", "span")

    def __init__(
        self,
        endpoint: Endpoint,
        span: Any,
        context_token: object,
        endpoint_token: contextvars.Token[Endpoint | None],
    ) -> None:
        self.endpoint = endpoint
        self.span = span  # None when the provider failed to start one
        self.context_token = context_token  # None when the context could not be attached
        self.endpoint_token = endpoint_token


class _PublicGetters:
    """Stands in for the API's private globals when they are not where this SDK looks:
    the same attribute names, read through the public getters (slower, always right)."""

    __slots__ = ("_metrics", "_trace")

    def __init__(self, trace: ModuleType, metrics: ModuleType) -> None:
        self._trace = trace
        self._metrics = metrics

    @property
    def _TRACER_PROVIDER(self) -> object:  # the name of the global it stands in for
        return self._trace.get_tracer_provider()

    @property
    def _METER_PROVIDER(self) -> object:
        return self._metrics.get_meter_provider()


class Telemetry:
    """The tracer and instruments of the ``accountapi`` scope, bound to the global
    providers and bound again whenever those change."""

    __slots__ = (
        "_context",
        "_meter_globals",
        "_meter_provider",
        "_metrics",
        "_on",
        "_suppress_key",
        "_trace_globals",
        "_tracer_provider",
        "budget_refusals",
        "call_duration",
        "joined",
        "rate_limited",
        "request_duration",
        "retries",
        "trace",
        "tracer",
    )

    def __init__(
        self,
        trace: ModuleType,
        metrics: ModuleType,
        context: ModuleType,
        provider_globals: tuple[object, object],
        suppress_key: str | None,
    ) -> None:
        self.trace: Any = trace
        self._metrics: Any = metrics
        self._context: Any = context
        self._trace_globals: Any
        self._meter_globals: Any
        self._trace_globals, self._meter_globals = provider_globals
        self._suppress_key = suppress_key
        self._tracer_provider: object = _MISSING
        self._meter_provider: object = _MISSING
        self._on = False
        # Bound by _bind() when a recording provider is first seen.
        self.tracer: Any = None
        self.call_duration: Any = None
        self.request_duration: Any = None
        self.retries: Any = None
        self.rate_limited: Any = None
        self.budget_refusals: Any = None
        self.joined: Any = None

    @property
    def reads_private_globals(self) -> bool:
        """Whether `active()` reads the API's module globals (the cheap way) rather
        than its public getters (the fallback when the layout is not as expected)."""
        return not isinstance(self._trace_globals, _PublicGetters)

    def active(self) -> bool:
        """Whether anything records: an SDK (not the API's own proxy or no-op) provides
        the global tracer or meter. Asked per call, since an application may set (or
        swap) its providers after making the client; decided again only when they change.

        The API's public getters look at ``os.environ`` on every call until a provider
        is set; the module globals they read are compared instead when the API keeps
        them where it did when this module was loaded (checked then, see
        `_provider_globals()`).
        """
        tracer_provider = self._trace_globals._TRACER_PROVIDER
        meter_provider = self._meter_globals._METER_PROVIDER
        if tracer_provider is self._tracer_provider and meter_provider is self._meter_provider:
            return self._on
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        on = self._on = _records(tracer_provider) or _records(meter_provider)
        if on:
            self._bind()
        return on

    def _bind(self) -> None:
        """Take the tracer and instruments from the providers now set (also after a swap:
        a tracer from the previous provider would go on feeding that one). A provider
        that raises here is replaced by the API's no-op one, the other still records."""
        try:
            self.tracer = self.trace.get_tracer_provider().get_tracer(SCOPE, __version__)
        except Exception:
            telemetry_failed("getting a tracer")
            self.tracer = self.trace.NoOpTracer()
        try:
            meter = self._metrics.get_meter_provider().get_meter(SCOPE, __version__)
            self._create_instruments(meter)
        except Exception:
            telemetry_failed("creating instruments")
            self._create_instruments(self._metrics.NoOpMeter(SCOPE))

    def _create_instruments(self, meter: Any) -> None:
        self.request_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            "accountapi.call.duration",
            unit="s",
            description="Duration of one SDK call: slot wait, every attempt and backoff.",
        )
        self.retries = meter.create_counter(
            "accountapi.call.retries",
            unit="{retry}",
            description="Attempts retried, by cause (status code or error class).",
        )
        self.rate_limited = meter.create_counter(
            "accountapi.call.rate_limited",
            unit="{response}",
            description="429 answers received.",
        )
        self.budget_refusals = meter.create_counter(
            "accountapi.retry_budget.refused",
            unit="{retry}",
            description="Retries not made because the client's retry budget was spent.",
        )
        self.joined = meter.create_counter(
            "accountapi.call.joined",
            unit="{call}",
            description="profile() calls answered by a read already in flight for the key.",
        )
        meter.create_observable_gauge(
            "accountapi.retry_budget.level",
            callbacks=[_budget_levels],
            unit="{token}",
            description="Tokens left in each retry budget of this process.",
        )

    def start_call(self, endpoint: Endpoint) -> CallScope:
        """Start a call's span and make it current, with HTTP instrumentation suppressed
        underneath; never raises (a span that cannot start leaves the call unspanned,
        still measured)."""
        span = None
        try:
            span = self.tracer.start_span(
                endpoint.call_name, kind=self.trace.SpanKind.INTERNAL, attributes=endpoint.labels
            )
        except Exception:
            telemetry_failed("starting a span")
        token = None
        try:
            context = self._context
            ctx = context.get_current() if span is None else self.trace.set_span_in_context(span)
            if self._suppress_key is not None:
                ctx = context.set_value(self._suppress_key, True, ctx)
            token = context.attach(ctx)
        except Exception:
            telemetry_failed("making a span current")
        return CallScope(endpoint, span, token, call_endpoint.set(endpoint))

    def end_call(
        self,
        scope: CallScope,
        elapsed: float,
        call: Call[Any] | None,
        exc: BaseException | None,
    ) -> None:
        """Record how a call ended on its span and in ``accountapi.call.duration``, then
        end the span; never raises."""
        call_endpoint.reset(scope.endpoint_token)
        labels = scope.endpoint.labels
        span = scope.span
        try:
            if exc is None:
                status = 0 if call is None or call.answer is None else call.answer.status
                attempts = 0 if call is None else call.sent
                if span is not None:
                    span.set_attributes(
                        {"http.response.status_code": status, "accountapi.attempts": attempts}
                    )
                self.call_duration.record(elapsed, {**labels, "http.response.status_code": status})
            else:
                kind = self._failed(span, exc, labels)
                self.call_duration.record(elapsed, {**labels, "error.type": kind})
        except Exception:
            telemetry_failed("recording a call")
        if scope.context_token is not None:
            try:
                self._context.detach(scope.context_token)
            except Exception:
                telemetry_failed("leaving a span's context")
        if span is not None:
            try:
                span.end()
            except Exception:
                telemetry_failed("ending a span")

    def _failed(self, span: Any, exc: BaseException, labels: dict[str, Any]) -> str:
        """Record a failed call on its span; returns its ``error.type``."""
        kind = error_type(exc)
        if isinstance(exc, APIStatusError) and exc.status == 429:
            self.rate_limited.add(1, labels)
        if span is None:
            return kind
        span.set_attribute("error.type", kind)
        if isinstance(exc, APIStatusError):
            span.set_attribute("http.response.status_code", exc.status)
        if isinstance(exc, AccountAPIError):
            span.set_attribute("accountapi.attempts", exc.attempts)
            # SDK messages never hold a key (tests/test_secrets_in_frames.py), but one
            # may name it by its hint (a malformed key's): no hint goes into the event.
            span.record_exception(exc, attributes=_without_hint(exc))
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, kind))
        return kind

    def request_ended(
        self, call: Call[Any], started_ns: int, elapsed: float, exc: BaseException | None
    ) -> None:
        """One request of a traced call, answered or failed: its ``CLIENT`` span (from
        ``started_ns``, made now that its outcome is known) and its
        ``http.client.request.duration``; never raises."""
        endpoint = call_endpoint.get()
        if endpoint is None:  # pragma: no cover - only traced calls attempt this way
            return
        attributes = dict(endpoint.request_attributes)
        labels = dict(endpoint.request_labels)
        if call.sent > 1:
            attributes["http.request.resend_count"] = call.sent - 1
        if isinstance(exc, APIStatusError):
            status: int | None = exc.status
        else:  # a 2xx whose body failed to decode still has its status
            status = None if call.answer is None else call.answer.status
        if status is not None:
            attributes["http.response.status_code"] = labels["http.response.status_code"] = status
        kind = None
        if exc is not None:
            kind = attributes["error.type"] = labels["error.type"] = error_type(exc)
        try:
            span = self.tracer.start_span(
                endpoint.request_name,
                kind=self.trace.SpanKind.CLIENT,
                attributes=attributes,
                start_time=started_ns,
            )
            if kind is not None:
                span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, kind))
            span.end()
        except Exception:
            telemetry_failed("recording a request's span")
        try:
            self.request_duration.record(elapsed, labels)
        except Exception:
            telemetry_failed("recording a request's duration")

    def retried(self, event: RetryEvent) -> None:
        """One retry: an event on the call's span and the retry (and 429) counters."""
        endpoint = call_endpoint.get()
        if endpoint is None:  # a retry outside a traced call
            return
        cause = error_type(event.error)
        span = self.trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "accountapi.retry",
                {
                    "accountapi.attempt": event.attempt,
                    "accountapi.retry.wait_s": event.wait,
                    "error.type": cause,
                },
            )
        labels = endpoint.labels
        self.retries.add(1, {**labels, "error.type": cause})
        if event.status == 429:
            self.rate_limited.add(1, labels)


_MISSING: Final = object()
_HIDDEN_HINT: Final = "<key hint withheld>"


def _without_hint(exc: AccountAPIError) -> dict[str, str] | None:
    """The ``exception.message`` and ``exception.stacktrace`` of an error whose text
    names its key by the hint, with the hint taken out (None: nothing to take out)."""
    hint = exc.key_hint
    message = str(exc)
    if not hint or hint not in message:
        return None
    stacktrace = "".join(traceback.format_exception(exc))
    return {
        "exception.message": message.replace(hint, _HIDDEN_HINT),
        "exception.stacktrace": stacktrace.replace(hint, _HIDDEN_HINT),
    }


def _records(provider: object) -> bool:
    """Whether a global provider records: set (not ``None``), and not one of the API
    package's own (its proxy or no-op), which record nothing."""
    if provider is None:
        return False
    module = type(provider).__module__
    return not module.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


def _mirrors(private: object, public: object) -> bool:
    """Whether a private global agrees with its public getter: the same provider, or
    ``None`` while the getter hands out the API's own stand-in."""
    return private is public or (private is None and not _records(public))


def _provider_globals(trace: ModuleType, metrics: ModuleType) -> tuple[object, object]:
    """Where `Telemetry.active()` reads the global providers from: the API's module
    globals (``trace._TRACER_PROVIDER``, ``metrics._internal._METER_PROVIDER``) when they
    are there and agree with the public getters, else the getters themselves, with a
    DEBUG line saying so. Never switches telemetry off."""
    meter_globals: ModuleType | None
    try:
        from opentelemetry.metrics import _internal as meter_globals
    except ImportError:
        meter_globals = None
    # The getters first: they load providers named by $OTEL_PYTHON_TRACER_PROVIDER /
    # $OTEL_PYTHON_METER_PROVIDER and make them global.
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    if (
        meter_globals is not None
        and _mirrors(getattr(trace, "_TRACER_PROVIDER", _MISSING), tracer_provider)
        and _mirrors(getattr(meter_globals, "_METER_PROVIDER", _MISSING), meter_provider)
    ):
        return trace, meter_globals
    logger.debug(
        "OpenTelemetry keeps its global providers elsewhere than accountapi expects; "
        "reading them through the public getters instead (a little more per call)"
    )
    getters = _PublicGetters(trace, metrics)
    return getters, getters


def _suppress_key(context: ModuleType) -> str | None:
    """The context key under which HTTP instrumentations (aiohttp's among them) record
    nothing; ``None``, with a DEBUG line, from an API that has none."""
    key = getattr(context, "_SUPPRESS_HTTP_INSTRUMENTATION_KEY", None)
    if not isinstance(key, str):
        logger.debug(
            "this opentelemetry-api has no key to suppress HTTP instrumentation; an "
            "instrumented aiohttp records its own spans under accountapi's"
        )
        return None
    return key


_loaded: list[Telemetry | None] = []


def telemetry() -> Telemetry | None:
    """The process's telemetry, or ``None`` when ``opentelemetry-api`` is not installed."""
    if not _loaded:
        try:
            from opentelemetry import context, metrics, trace
        except ImportError:
            _loaded.append(None)
        else:
            _loaded.append(
                Telemetry(
                    trace,
                    metrics,
                    context,
                    _provider_globals(trace, metrics),
                    _suppress_key(context),
                )
            )
    return _loaded[0]


def retried(event: RetryEvent) -> None:
    """Called by the retry loop before each wait (a no-op without OpenTelemetry)."""
    active = _loaded[0] if _loaded else None
    if active is not None:
        try:
            active.retried(event)
        except Exception:
            telemetry_failed("recording a retry")


def budget_refused(error: AccountAPIError) -> None:
    """A retry the budget refused, counted by cause within a traced call (a no-op
    without OpenTelemetry or outside one)."""
    endpoint = call_endpoint.get()
    active = _loaded[0] if _loaded else None
    if active is None or endpoint is None:
        return
    try:
        active.budget_refusals.add(1, {**endpoint.labels, "error.type": error_type(error)})
    except Exception:
        telemetry_failed("recording a refused retry")


def joined(endpoint: Endpoint) -> None:
    """A call that joined a read in flight (a no-op without OpenTelemetry, or while
    nothing records)."""
    active = _loaded[0] if _loaded else None
    if active is None or not active.active():
        return
    try:
        active.joined.add(1, endpoint.labels)
    except Exception:
        telemetry_failed("recording a joined read")


def _budget_levels(options: Any) -> list[Any]:
    """The gauge's observations: every live budget's level, by its number."""
    from opentelemetry.metrics import Observation

    return [
        Observation(budget.level, {"accountapi.retry_budget.number": budget.number})
        for budget in live_budgets()
    ]


_failures: list[str] = []


def telemetry_failed(what: str) -> None:
    """Log that OpenTelemetry (its SDK, or a span processor, view or reader of the
    application's) raised while ``what``; call it from the ``except`` block. The call
    goes on without that record: telemetry never fails a call. The first failure is a
    WARNING with its traceback, later ones DEBUG, so a processor that always raises does
    not flood the log."""
    level = logging.DEBUG if _failures else logging.WARNING
    _failures.append(what)
    del _failures[:-1]
    logger.log(
        level, "OpenTelemetry raised while %s; the call goes on without it", what, exc_info=True
    )
