"""OpenTelemetry spans and metrics for every call, when ``opentelemetry-api`` is installed.

Nothing here is configured by the user: spans go to the global tracer provider and
metrics to the global meter provider, the way OpenTelemetry libraries are meant to
work. With only ``opentelemetry-api`` installed those are no-ops; once the application
sets up ``opentelemetry-sdk`` (or an agent does) the SDK's spans appear next to its own.

What one call records (one span covers the whole call: the wait for a slot, every
attempt and every backoff):

- a ``CLIENT`` span named ``"{method} {url.template}"`` with ``http.request.method``,
  ``server.address``, ``server.port``, ``url.template``, ``http.response.status_code``
  (of the last answer), ``error.type`` (the status code, or the SDK error's class name)
  and ``accountapi.attempts`` (requests sent); each retry is a span event
  ``accountapi.retry`` with the failed attempt, its cause and the wait ahead;
- the histogram ``accountapi.call.duration`` (seconds, by method, template, server and
  status or error type) and the counters ``accountapi.call.retries`` (by cause) and
  ``accountapi.call.rate_limited`` (429 answers).

Under overload (README "Under overload"): the counters
``accountapi.retry_budget.refused`` (retries a spent budget refused, by cause) and
``accountapi.call.joined`` (``profile()`` calls that joined a read in flight instead of
sending their own), and the gauge ``accountapi.retry_budget.level`` (tokens left in each
live budget, labelled by the budget's number in the process).

No key, hint or request header is ever an attribute, event or label: labels are the
method, the endpoint template, the server, and a status code or error class.

Cost. The import is attempted once, when the first client is made. When it fails the
client binds its untraced call path and this module costs nothing per call. With the
API installed but no SDK set up (common: many libraries depend on the API), each call
asks whether the global providers are still the API's own no-ops and, if so, takes the
untraced path. See ``python -m benchmarks.instructions --only
sdk,sdk-no-otel,sdk-otel-sdk``.
"""

from __future__ import annotations

import contextvars
import logging
from typing import TYPE_CHECKING, Any, Final

from ._budget import live_budgets
from ._exceptions import AccountAPIError, APIStatusError
from ._version import __version__

if TYPE_CHECKING:
    from ._retry import RetryEvent

__all__ = ["Telemetry", "end_span", "error_type", "telemetry", "telemetry_failed"]

SCOPE: Final = "accountapi"
logger: Final = logging.getLogger("accountapi")

# The labels of the call in progress in this task, for retry events and counters (the
# retry loop knows the attempt, not the endpoint). Set only on the traced path.
call_labels: Final[contextvars.ContextVar[dict[str, Any] | None]] = contextvars.ContextVar(
    "accountapi_call_labels", default=None
)


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of a failed call: the HTTP status, else the exception's class."""
    if isinstance(exc, APIStatusError):
        return str(exc.status)
    return type(exc).__name__


class Telemetry:
    """The tracer and instruments of the ``accountapi`` scope."""

    __slots__ = (
        "_meter_globals",
        "_meter_provider",
        "_metrics",
        "_on",
        "_tracer_provider",
        "budget_refusals",
        "duration",
        "joined",
        "rate_limited",
        "retries",
        "trace",
        "tracer",
    )

    def __init__(self, trace: Any, metrics: Any, meter_globals: Any) -> None:
        self.trace = trace
        self._metrics = metrics
        self._meter_globals = meter_globals
        # Providers named by $OTEL_PYTHON_TRACER_PROVIDER / _METER_PROVIDER are loaded
        # (and made global) by the first call of the getters.
        trace.get_tracer_provider()
        metrics.get_meter_provider()
        self._tracer_provider: object = _MISSING
        self._meter_provider: object = _MISSING
        self._on = False
        self.tracer = trace.get_tracer(SCOPE, __version__)
        meter = metrics.get_meter(SCOPE, __version__)
        self.duration = meter.create_histogram(
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

    def active(self) -> bool:
        """Whether anything records: an SDK (not the API's own proxy or no-op) provides
        the global tracer or meter. Asked per call, since an application may set its
        providers after making the client; decided again only when they change.

        The API's public getters look at ``os.environ`` on every call until a provider
        is set (about 2 µs each, measured); the module globals they read are compared
        instead, with the getters as the fallback should a future API rename them.
        """
        try:  # attribute loads, not getattr(..., default): this runs on every call
            tracer_provider = self.trace._TRACER_PROVIDER
            meter_provider = self._meter_globals._METER_PROVIDER
        except AttributeError:  # pragma: no cover - an API that renamed them
            tracer_provider = getattr(self.trace, "_TRACER_PROVIDER", _MISSING)
            meter_provider = getattr(self._meter_globals, "_METER_PROVIDER", _MISSING)
        if tracer_provider is self._tracer_provider and meter_provider is self._meter_provider:
            return self._on
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        if tracer_provider is _MISSING:  # pragma: no cover - an API that renamed it
            tracer_provider = self.trace.get_tracer_provider()
        if meter_provider is _MISSING:  # pragma: no cover - same
            meter_provider = self._metrics.get_meter_provider()
        self._on = _records(tracer_provider) or _records(meter_provider)
        return self._on

    def retried(self, event: RetryEvent) -> None:
        """One retry: an event on the call's span and the retry (and 429) counters."""
        labels = call_labels.get()
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
        if labels is None:  # a retry outside a traced call (not made by this SDK)
            return
        self.retries.add(1, {**labels, "error.type": cause})
        if event.status == 429:
            self.rate_limited.add(1, labels)

    def failed(self, span: Any, exc: BaseException, labels: dict[str, Any]) -> str:
        """Record a failed call on its span; returns its ``error.type``."""
        kind = error_type(exc)
        span.set_attribute("error.type", kind)
        if isinstance(exc, APIStatusError):
            span.set_attribute("http.response.status_code", exc.status)
            if exc.status == 429:
                self.rate_limited.add(1, labels)
        if isinstance(exc, AccountAPIError):
            span.set_attribute("accountapi.attempts", exc.attempts)
            # SDK messages never hold a key (tests/test_secrets_in_frames.py).
            span.record_exception(exc)
        span.set_status(self.trace.Status(self.trace.StatusCode.ERROR, kind))
        return kind


_MISSING: Final = object()


def _records(provider: object) -> bool:
    """Whether a global provider records: set (not ``None``), and not one of the API
    package's own (its proxy or no-op), which record nothing."""
    if provider is None:
        return False
    module = type(provider).__module__
    return not module.startswith(("opentelemetry.trace", "opentelemetry.metrics"))


_loaded: list[Telemetry | None] = []


def telemetry() -> Telemetry | None:
    """The process's telemetry, or ``None`` when ``opentelemetry-api`` is not installed."""
    if not _loaded:
        try:
            from opentelemetry import metrics, trace
            from opentelemetry.metrics import _internal as meter_globals
        except ImportError:
            _loaded.append(None)
        else:
            _loaded.append(Telemetry(trace, metrics, meter_globals))
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
    """A retry the budget refused (a no-op without OpenTelemetry)."""
    active = _loaded[0] if _loaded else None
    if active is None:
        return
    try:
        labels = call_labels.get()
        active.budget_refusals.add(1, {**(labels or {}), "error.type": error_type(error)})
    except Exception:
        telemetry_failed("recording a refused retry")


def joined(labels: dict[str, Any]) -> None:
    """A call that joined a read in flight (a no-op without OpenTelemetry)."""
    active = _loaded[0] if _loaded else None
    if active is None:
        return
    try:
        active.joined.add(1, labels)
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


def end_span(scope: Any, exc: BaseException | None) -> None:
    """Leave a span's context manager (ending the span), with the call's exception if it
    failed; a processor that raises on the span's end is logged, never raised."""
    try:
        if exc is None:
            scope.__exit__(None, None, None)
        else:
            scope.__exit__(type(exc), exc, exc.__traceback__)
    except Exception as raised:
        if raised is not exc:
            telemetry_failed("ending a span")
