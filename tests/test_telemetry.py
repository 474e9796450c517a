"""OpenTelemetry: a span per call, a CLIENT span per request, and metrics, by the stable
HTTP client semantic conventions, through the global providers.

The providers are opentelemetry-sdk's own, with its in-memory span exporter and metric
reader, installed once for the process (OpenTelemetry allows one global provider). A
sampler switch keeps every other test module's calls unrecorded. What needs a fresh
process (no OpenTelemetry, a provider set late or swapped, the API's layout changed)
runs in a child process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import pytest
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.sdk.metrics import Counter, ExemplarFilter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode, TraceState
from opentelemetry.util.types import Attributes

from accountapi import (
    AccountClient,
    APIConnectionError,
    AuthenticationError,
    MalformedAPIKeyError,
    RateLimitError,
    RetryBudget,
    RetryPolicy,
    ServiceUnavailableError,
    SyncAccountClient,
    _telemetry,
    key_hint,
)
from accountapi.testing import Emulator, Fault, VirtualClock

CANARY = "dpct_CANARYcanary0123456789SECRET"
# http.client.request.duration's bucket boundaries, as the conventions advise them.
CONVENTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class _Switch(Sampler):
    """Records spans only while a test of this module runs."""

    on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if not self.on:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "test switch"


_SWITCH = _Switch()
_SPANS = InMemorySpanExporter()
# Delta temporality: each collection holds only what was recorded since the last one.
_METRICS = InMemoryMetricReader(
    preferred_temporality={
        Counter: AggregationTemporality.DELTA,
        Histogram: AggregationTemporality.DELTA,
    }
)
_installed = threading.Lock()


class _BrokenProcessor(SpanProcessor):
    """An application's span processor that raises where it is told to (off by default)."""

    raise_on: frozenset[str] = frozenset()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        if "start" in self.raise_on:
            raise RuntimeError("processor broke on start")

    def on_end(self, span: ReadableSpan) -> None:
        if "end" in self.raise_on:
            raise RuntimeError("processor broke on end")


_BROKEN = _BrokenProcessor()


class _BrokenExemplarFilter(ExemplarFilter):
    """An application's metrics set-up that raises on every measurement while told to."""

    raising = False

    def should_sample(
        self,
        value: int | float,
        time_unix_nano: int,
        attributes: Attributes,
        context: Context,
    ) -> bool:
        if self.raising:
            raise RuntimeError("exemplar filter broke")
        return False


_BROKEN_METER = _BrokenExemplarFilter()


@pytest.fixture
def otel() -> Iterator[None]:
    with _installed:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            provider = TracerProvider(sampler=_SWITCH)
            provider.add_span_processor(_BROKEN)
            provider.add_span_processor(SimpleSpanProcessor(_SPANS))
            trace.set_tracer_provider(provider)
            metrics.set_meter_provider(
                MeterProvider(metric_readers=[_METRICS], exemplar_filter=_BROKEN_METER)
            )
    _SPANS.clear()
    _METRICS.get_metrics_data()  # drain what earlier tests recorded
    _SWITCH.on = True
    try:
        yield
    finally:
        _SWITCH.on = False
        _BROKEN.raise_on = frozenset()
        _BROKEN_METER.raising = False


def _spans(scope: str = "accountapi") -> list[ReadableSpan]:
    return [
        s
        for s in _SPANS.get_finished_spans()
        if s.instrumentation_scope is not None and s.instrumentation_scope.name == scope
    ]


def _calls() -> list[ReadableSpan]:
    """The SDK's call spans, in the order they ended."""
    return [s for s in _spans() if s.kind is SpanKind.INTERNAL]


def _requests() -> list[ReadableSpan]:
    """The SDK's request spans, in the order they ended."""
    return [s for s in _spans() if s.kind is SpanKind.CLIENT]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _collect(scope_name: str = "accountapi") -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Metric name -> (attributes, point) of what ``scope_name`` recorded since the last
    collection."""
    data = _METRICS.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != scope_name:
                continue
            for metric in scope.metrics:
                points = [(dict(p.attributes or {}), p) for p in metric.data.data_points]
                found.setdefault(metric.name, []).extend(points)
    return found


def _probe(code: str) -> Any:
    """Run ``code`` in a fresh interpreter; what it prints last, as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.splitlines()[-1])


@pytest.fixture
async def emu() -> Iterator[Emulator]:  # type: ignore[misc]
    async with Emulator() as emulator:
        yield emulator


async def test_a_call_is_a_span_with_a_client_span_per_request(otel: None, emu: Emulator) -> None:
    """GET profile: an INTERNAL call span and under it one CLIENT span with the
    conventions' attributes (url.full with no key, no resend count on a first request)."""
    key = emu.add_key()
    async with AccountClient(key, base_url=emu.url) as client:
        await client.account.profile()
        await client.account.dismiss_notifications()
    port = int(emu.url.rsplit(":", 1)[1])
    get, post = _calls()
    get_request, post_request = _requests()
    assert get.name == "accountapi GET /v1/account/profile"
    assert _attrs(get) == {
        "http.request.method": "GET",
        "url.template": "/v1/account/profile",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "accountapi.attempts": 1,
    }
    assert get.status.status_code is StatusCode.UNSET
    assert get_request.name == "GET /v1/account/profile"
    assert _attrs(get_request) == {
        "http.request.method": "GET",
        "url.template": "/v1/account/profile",
        "url.full": f"{emu.url}/v1/account/profile",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
    }
    assert get_request.parent is not None
    assert get_request.parent.span_id == get.context.span_id
    assert get_request.status.status_code is StatusCode.UNSET
    assert get.start_time is not None
    assert get_request.start_time is not None
    assert get.end_time is not None
    assert get_request.end_time is not None
    assert get.start_time <= get_request.start_time <= get_request.end_time <= get.end_time
    assert post.name == "accountapi POST /v1/account/notifications/dismiss"
    assert _attrs(post_request)["url.full"] == f"{emu.url}/v1/account/notifications/dismiss"
    assert _attrs(post_request)["http.response.status_code"] in (200, 204)
    assert key not in "".join(s.to_json() for s in _spans())


async def test_requests_are_measured_by_the_conventions(otel: None, emu: Emulator) -> None:
    """http.client.request.duration: seconds, the advised buckets, one point per request
    with the standard attributes (method, server, status) and the opt-in scheme and
    template."""
    key = emu.add_key()
    async with AccountClient(key, base_url=emu.url) as client:
        await client.account.profile()
        await client.account.profile()
    data = _METRICS.get_metrics_data()
    assert data is not None
    (metric,) = [
        m
        for r in data.resource_metrics
        for sc in r.scope_metrics
        if sc.scope.name == "accountapi"
        for m in sc.metrics
        if m.name == "http.client.request.duration"
    ]
    assert metric.unit == "s"
    (point,) = metric.data.data_points
    assert isinstance(point, HistogramDataPoint)
    assert tuple(point.explicit_bounds) == CONVENTION_BUCKETS
    assert point.count == 2
    assert dict(point.attributes or {}) == {
        "http.request.method": "GET",
        "url.template": "/v1/account/profile",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "server.port": int(emu.url.rsplit(":", 1)[1]),
        "http.response.status_code": 200,
    }


async def test_retries_are_requests_resent_events_and_counted(otel: None, emu: Emulator) -> None:
    """A 429 then a 503 then success: three CLIENT spans (resend counts 1 and 2 on the
    resent ones, error.type and ERROR status on the failed ones), two retry events on the
    call span, counters by cause, and durations (on the injected clock)."""
    key = emu.add_key()
    emu.script(key, [Fault.rate_limited(2), Fault.status(503)])
    clock = VirtualClock()
    policy = RetryPolicy(backoff_initial=0.25, backoff_max=0.25)
    async with AccountClient(key, base_url=emu.url, clock=clock, retry=policy) as client:
        await client.account.profile()
    (span,) = _calls()
    assert span.attributes is not None
    assert span.attributes["accountapi.attempts"] == 3
    assert span.attributes["http.response.status_code"] == 200
    requests = _requests()
    assert [_attrs(r).get("http.request.resend_count") for r in requests] == [None, 1, 2]
    assert [_attrs(r)["http.response.status_code"] for r in requests] == [429, 503, 200]
    assert [_attrs(r).get("error.type") for r in requests] == ["429", "503", None]
    assert [r.status.status_code for r in requests] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert all(r.parent is not None and r.parent.span_id == span.context.span_id for r in requests)
    events = [(e.name, dict(e.attributes or {})) for e in span.events]
    assert [name for name, _ in events] == ["accountapi.retry", "accountapi.retry"]
    first, second = (attrs for _, attrs in events)
    assert first["error.type"] == "429"
    assert first["accountapi.attempt"] == 1
    assert first["accountapi.retry.wait_s"] == pytest.approx(clock.sleeps[0])
    assert clock.sleeps[0] >= 2
    assert second["error.type"] == "503"
    recorded = _collect()
    retries = {p[0]["error.type"]: p[1].value for p in recorded["accountapi.call.retries"]}
    assert retries == {"429": 1, "503": 1}
    assert {p[0]["url.template"] for p in recorded["accountapi.call.retries"]} == {
        "/v1/account/profile"
    }
    (limited,) = recorded["accountapi.call.rate_limited"]
    assert limited[1].value == 1
    (duration,) = recorded["accountapi.call.duration"]
    assert duration[0]["http.response.status_code"] == 200
    assert duration[1].count == 1
    assert duration[1].sum >= clock.slept
    per_request = {
        (p[0]["http.response.status_code"], p[0].get("error.type")): p[1].count
        for p in recorded["http.client.request.duration"]
    }
    assert per_request == {(429, "429"): 1, (503, "503"): 1, (200, None): 1}
    # Each request's duration leaves out the backoff before it: all three together are
    # shorter than the waits the call slept.
    assert sum(p[1].sum for p in recorded["http.client.request.duration"]) < clock.slept


async def test_a_failed_call_marks_the_span_as_an_error(otel: None, emu: Emulator) -> None:
    """A 401 is final: ERROR status, error.type "401", the exception recorded under its
    public name; a failed connection reports the SDK error's public class name on the
    call and on its request, which has no status code."""
    async with AccountClient("dpct_unknown_key_abcdef", base_url=emu.url) as client:
        with pytest.raises(AuthenticationError):
            await client.account.profile()
    (span,) = _calls()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "401"
    assert span.attributes["http.response.status_code"] == 401
    (event,) = span.events
    assert event.name == "exception"
    assert dict(event.attributes or {})["exception.type"] == "accountapi.AuthenticationError"
    (request,) = _requests()
    assert _attrs(request)["error.type"] == "401"
    assert request.status.status_code is StatusCode.ERROR
    (duration,) = _collect()["accountapi.call.duration"]
    assert duration[0]["error.type"] == "401"

    _SPANS.clear()
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with AccountClient(emu.add_key(), base_url=url, max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            await client.account.profile()
    (span,) = _calls()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "accountapi.APIConnectionError"
    assert "http.response.status_code" not in span.attributes
    (request,) = _requests()
    assert _attrs(request)["error.type"] == "accountapi.APIConnectionError"
    assert "http.response.status_code" not in _attrs(request)
    (duration,) = _collect()["http.client.request.duration"]
    assert duration[0]["error.type"] == "accountapi.APIConnectionError"


async def test_a_request_never_sent_has_no_client_span(otel: None, emu: Emulator) -> None:
    """A call refused before sending (the key cooling down after a 429, longer than the
    call may wait) is a failed call span with no CLIENT span: no request, no request span."""
    key = emu.add_key()
    emu.script(key, [Fault.rate_limited(30)])
    async with AccountClient(key, base_url=emu.url, max_retries=0) as client:
        with pytest.raises(RateLimitError):
            await client.account.profile()  # sent: answered 429, the key cools down
        with pytest.raises(RateLimitError):
            await client.account.profile(timeout=1)  # refused by the gate, nothing sent
    assert emu.attempts(key) == 1
    assert len(_calls()) == 2
    (request,) = _requests()
    assert _attrs(request)["http.response.status_code"] == 429


async def test_a_cancelled_call_ends_its_span_as_cancelled(otel: None, emu: Emulator) -> None:
    """A caller that cancels (a web request that went away) still ends the call's and the
    request's spans, with status ERROR and error.type asyncio.CancelledError, and
    records their durations."""
    key = emu.add_key(latency=30)
    async with AccountClient(key, base_url=emu.url) as client:
        call = asyncio.create_task(client.account.profile())

        async def sent() -> bool:
            return emu.attempts(key) == 1

        deadline = time.monotonic() + 10
        while not await sent():  # polling the emulator's count, bounded above
            assert time.monotonic() < deadline, "the request never reached the emulator"
            await asyncio.sleep(0.005)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    (span,) = _calls()
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "asyncio.CancelledError"
    (request,) = _requests()
    assert _attrs(request)["error.type"] == "asyncio.CancelledError"
    recorded = _collect()
    (duration,) = recorded["accountapi.call.duration"]
    assert duration[0]["error.type"] == "asyncio.CancelledError"
    (duration,) = recorded["http.client.request.duration"]
    assert duration[0]["error.type"] == "asyncio.CancelledError"


async def test_the_key_never_reaches_a_span_event_or_metric(otel: None, emu: Emulator) -> None:
    """A canary key through success, 429 retries, a final 429 and a 401: no span, event,
    exception record or metric holds it (nor its hint's secret part); the control shows
    the detector finds the key when it is there."""
    emu.add_key(key=CANARY)
    clock = VirtualClock()
    async with AccountClient(CANARY, base_url=emu.url, clock=clock, max_retries=1) as client:
        await client.account.profile()
        emu.script(CANARY, [Fault.rate_limited(1)])
        await client.account.profile()
        emu.script(CANARY, [Fault.rate_limited(1), Fault.rate_limited(1)])
        with pytest.raises(RateLimitError):
            await client.account.profile()
        with pytest.raises(AuthenticationError):
            await client.account.profile(api_key=CANARY + "x")
        async with client.balances([CANARY, CANARY + "y"]) as results:
            assert len([r async for r in results]) == 2
    spans = _spans()
    assert len(_calls()) == 6
    assert len(_requests()) == 8  # 1 + 2 + 2 + 1 + 2
    dumped = "\n".join(s.to_json() for s in spans)
    data = _METRICS.get_metrics_data()
    assert data is not None
    dumped += data.to_json()
    assert "CANARYcanary" not in dumped
    assert "SECRET" not in dumped
    assert "exception.stacktrace" in dumped  # the text checked is real
    assert "accountapi.retry" in dumped
    assert "url.full" in dumped
    # Control: the same dump shows a key that an application put on its own span.
    with trace.get_tracer("app").start_as_current_span("control", attributes={"k": CANARY}):
        pass
    assert "CANARYcanary" in "\n".join(s.to_json() for s in _SPANS.get_finished_spans())


async def test_a_malformed_keys_hint_never_reaches_the_exception_event(
    otel: None, emu: Emulator
) -> None:
    """A real key pasted with a newline is malformed; its error names it by its hint
    (``dpct_…RET\\n``, the key's last characters). The call span records the exception
    (type, message, stacktrace) without that hint: no hint is ever a span's event."""
    pasted = CANARY + "\n"
    hint = key_hint(pasted)
    async with AccountClient(base_url=emu.url) as client:
        with pytest.raises(MalformedAPIKeyError) as raised:
            await client.account.profile(api_key=pasted)
    assert hint in str(raised.value)  # the error itself says which key, to the caller
    (span,) = _calls()
    (event,) = span.events
    recorded = dict(event.attributes or {})
    assert recorded["exception.type"] == "accountapi.MalformedAPIKeyError"
    assert "the API key contains whitespace" in str(recorded["exception.message"])
    assert "MalformedAPIKeyError" in str(recorded["exception.stacktrace"])
    values = [
        str(value) for s in _spans() for e in s.events for value in (e.attributes or {}).values()
    ]
    values += [str(value) for s in _spans() for value in (s.attributes or {}).values()]
    assert not [value for value in values if hint in value or "RET\n" in value]


async def test_a_call_inside_the_applications_span_is_its_child(otel: None, emu: Emulator) -> None:
    """The SDK's call span is a child of the caller's current span, for the async and the
    sync client (whose calls run on its own loop thread); the caller's context is as it
    was once the call returns."""
    key = emu.add_key()
    tracer = trace.get_tracer("app")
    async with AccountClient(key, base_url=emu.url) as client:
        with tracer.start_as_current_span("handler") as parent:
            await client.account.profile()
            assert trace.get_current_span() is parent
    (child,) = _calls()
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN

    _SPANS.clear()

    def in_a_thread() -> int:
        with (
            SyncAccountClient(key, base_url=emu.url) as sync,
            tracer.start_as_current_span("view") as view,
        ):
            sync.account.profile()
            return view.get_span_context().span_id

    view_id = await asyncio.to_thread(in_a_thread)
    (child,) = _calls()
    assert child.parent is not None
    assert child.parent.span_id == view_id


@pytest.fixture
def aiohttp_instrumented(otel: None) -> Iterator[None]:
    """opentelemetry-instrumentation-aiohttp-client on, as auto-instrumentation turns it
    on (every ClientSession made from now on is traced), and off again afterwards."""
    instrumentor = AioHttpClientInstrumentor()
    instrumentor.instrument()
    try:
        yield
    finally:
        instrumentor.uninstrument()


async def test_aiohttp_instrumentation_adds_no_second_set_of_spans(
    aiohttp_instrumented: None, emu: Emulator
) -> None:
    """With the aiohttp client instrumentation on, a call with a retry is the SDK's call
    span and its two CLIENT spans only: the instrumentation is suppressed under the
    SDK's span (no spans, no duration metric of its own); the control, a plain aiohttp
    request outside the SDK, shows the instrumentation is live."""
    key = emu.add_key()
    emu.script(key, [Fault.status(503)])
    async with AccountClient(key, base_url=emu.url, clock=VirtualClock()) as client:
        await client.account.profile()
    assert len(_calls()) == 1
    assert len(_requests()) == 2
    assert [s.name for s in _SPANS.get_finished_spans() if s.kind is SpanKind.CLIENT] == [
        "GET /v1/account/profile",
        "GET /v1/account/profile",
    ]
    instrumentation = "opentelemetry.instrumentation.aiohttp_client"
    assert _spans(instrumentation) == []
    assert "http.client.request.duration" not in _collect(instrumentation)
    assert otel_context.get_current() == {}  # nothing left attached

    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{emu.url}/v1/account/profile") as resp,
    ):
        await resp.read()
    (control,) = _spans(instrumentation)
    assert control.kind is SpanKind.CLIENT


@pytest.mark.parametrize("where", ["start", "end", "start+end"])
async def test_a_span_processor_that_raises_never_fails_a_call(
    otel: None,
    emu: Emulator,
    where: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An application's span processor raising on a span's start or end: the call's
    answer (or its own error, after a retry) still reaches the caller, a done dismissal
    is reported done, the metrics are still recorded, the first failure is logged as a
    WARNING and the rest at DEBUG, no key is in the log and no context is left attached."""
    monkeypatch.setattr(_telemetry, "_failures", [])  # as in a fresh process
    _BROKEN.raise_on = frozenset(where.split("+"))
    key, bad = emu.add_key({"balance_eur": "2.500000"}), "dpct_" + "u" * 32
    emu.script(key, [Fault.status(503)])
    clock = VirtualClock()
    with caplog.at_level("DEBUG", logger="accountapi"):
        async with AccountClient(key, base_url=emu.url, clock=clock) as client:
            profile = await client.account.profile()
            await client.account.dismiss_notifications()
            with pytest.raises(AuthenticationError):
                await client.account.profile(api_key=bad)
    assert str(profile.balance_eur) == "2.500000"
    assert emu.attempts(key) == 2
    assert emu.attempts(key, "/v1/account/notifications/dismiss") == 1
    failures = [r.levelname for r in caplog.records if "OpenTelemetry raised" in r.getMessage()]
    assert failures == ["WARNING"] + ["DEBUG"] * (len(failures) - 1)
    assert len(failures) >= 2
    assert all(key not in r.getMessage() and bad not in r.getMessage() for r in caplog.records)
    assert trace.get_current_span() is trace.INVALID_SPAN  # no context left attached
    assert otel_context.get_current() == {}
    recorded = _collect()
    assert sum(p[1].count for p in recorded["http.client.request.duration"]) == 4
    assert sum(p[1].count for p in recorded["accountapi.call.duration"]) == 3


async def test_a_meter_that_raises_never_fails_a_call(
    otel: None, emu: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The application's metrics set-up raising on every measurement (duration, retry and
    429 counters): the call's answer reaches the caller after its retry, its spans are
    still recorded, and the failure is logged."""
    monkeypatch.setattr(_telemetry, "_failures", [])
    _BROKEN_METER.raising = True
    key = emu.add_key()
    emu.script(key, [Fault.rate_limited(1)])
    with caplog.at_level("DEBUG", logger="accountapi"):
        async with AccountClient(key, base_url=emu.url, clock=VirtualClock()) as client:
            profile = await client.account.profile()
    assert profile.balance_eur is not None
    assert emu.attempts(key) == 2
    assert len(_calls()) == 1
    assert len(_requests()) == 2
    failures = [r for r in caplog.records if "OpenTelemetry raised" in r.getMessage()]
    assert failures[0].levelname == "WARNING"
    assert {r.getMessage().split(" while ")[1].split(";")[0] for r in failures} == {
        "recording a request's duration",
        "recording a retry",
        "recording a call",
    }


def test_without_opentelemetry_the_call_path_is_the_untraced_one() -> None:
    """With opentelemetry-api not importable the client has no telemetry (each call goes
    straight to the untraced path: one None check) and calls work."""
    probe = """
import asyncio, json, sys
sys.modules["opentelemetry"] = None  # as if not installed
from accountapi import AccountClient
from accountapi import _telemetry
from accountapi.testing import Emulator

async def main():
    async with Emulator() as emu:
        key = emu.add_key()
        async with AccountClient(key, base_url=emu.url) as client:
            untraced = client._calls._telemetry is None
            profile = await client.account.profile()
    print(json.dumps([untraced, str(profile.balance_eur)]))

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    untraced, balance = json.loads(out.stdout)
    assert untraced is True
    assert balance


async def test_with_opentelemetry_the_client_has_telemetry(emu: Emulator) -> None:
    async with AccountClient(emu.add_key(), base_url=emu.url) as client:
        assert client._calls._telemetry is _telemetry.telemetry()
        assert client._calls._telemetry is not None


def test_with_only_the_api_installed_nothing_is_recorded_until_an_sdk_is_set() -> None:
    """opentelemetry-api without an SDK (a common transitive install): calls take the
    untraced path; once the application sets an SDK provider, the next call is traced."""
    probe = """
import asyncio, json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from accountapi import AccountClient
from accountapi.testing import Emulator

async def main():
    async with Emulator() as emu:
        async with AccountClient(emu.add_key(), base_url=emu.url) as client:
            before = client._calls._telemetry.active()
            await client.account.profile()
            spans = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(spans))
            trace.set_tracer_provider(provider)  # after the client was made
            after = client._calls._telemetry.active()
            await client.account.profile()
    print(json.dumps([before, after, [s.name for s in spans.get_finished_spans()]]))

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    before, after, names = json.loads(out.stdout)
    assert before is False
    assert after is True
    assert names == ["GET /v1/account/profile", "accountapi GET /v1/account/profile"]


def test_a_provider_swapped_at_runtime_gets_the_next_calls_spans() -> None:
    """An application that replaces its tracer provider (tests and some agents do): the
    next call's spans go to the new provider, not the one the SDK first saw."""
    code = """
import asyncio, json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from accountapi import AccountClient
from accountapi.testing import Emulator

def provider():
    spans = InMemorySpanExporter()
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(spans))
    return made, spans

async def main():
    first, first_spans = provider()
    second, second_spans = provider()
    trace.set_tracer_provider(first)
    async with Emulator() as emu:
        async with AccountClient(emu.add_key(), base_url=emu.url) as client:
            await client.account.profile()
            trace._TRACER_PROVIDER = second  # set_tracer_provider() allows one; swap it
            await client.account.profile()
    print(json.dumps([len(first_spans.get_finished_spans()), len(second_spans.get_finished_spans())]))

asyncio.run(main())
"""
    assert _probe(code) == [2, 2]


def test_a_meter_provider_that_raises_leaves_the_spans_recording() -> None:
    """An application's own meter provider that raises when asked for a meter: calls
    succeed, their spans are still recorded, and the failure is logged once as a WARNING."""
    code = """
import asyncio, json, logging
from opentelemetry import metrics, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from accountapi import AccountClient
from accountapi.testing import Emulator

class Broken(NoOpMeterProvider):
    def get_meter(self, *args, **kwargs):
        raise RuntimeError("meter provider broke")

records = []
handler = logging.Handler()
handler.emit = records.append
logging.getLogger("accountapi").addHandler(handler)
spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(provider)
metrics.set_meter_provider(Broken())

async def main():
    async with Emulator() as emu:
        async with AccountClient(emu.add_key(), base_url=emu.url) as client:
            profile = await client.account.profile()
    warnings = [r.getMessage() for r in records if r.levelname == "WARNING"]
    print(json.dumps([str(profile.balance_eur), len(spans.get_finished_spans()), warnings]))

asyncio.run(main())
"""
    balance, spans, warnings = _probe(code)
    assert balance
    assert spans == 2
    assert warnings == [
        "OpenTelemetry raised while creating instruments; the call goes on without it"
    ]


def test_the_api_keeps_its_providers_where_the_sdk_reads_them() -> None:
    """The installed opentelemetry-api keeps its global providers in the module globals
    this SDK compares per call, and has the key that suppresses HTTP instrumentation.
    When an API release moves either, this fails (the SDK itself falls back to the
    public getters, at a higher cost per call, and says so at DEBUG)."""
    tel = _telemetry.telemetry()
    assert tel is not None
    assert tel.reads_private_globals
    assert isinstance(_telemetry._suppress_key(otel_context), str)


def test_a_moved_layout_falls_back_to_the_public_getters() -> None:
    """Globals missing, or present but not what the getters return: the public getters
    are used (never telemetry switched off)."""

    class Provider:  # an SDK's provider, as far as the check can tell
        pass

    sdk_provider = Provider()

    class Trace:
        @staticmethod
        def get_tracer_provider() -> object:
            return sdk_provider

    class Metrics:
        @staticmethod
        def get_meter_provider() -> object:
            return sdk_provider

    tracers, meters = _telemetry._provider_globals(Trace, Metrics)  # type: ignore[arg-type]
    assert isinstance(tracers, _telemetry._PublicGetters)
    assert isinstance(meters, _telemetry._PublicGetters)
    assert tracers._TRACER_PROVIDER is sdk_provider
    assert meters._METER_PROVIDER is sdk_provider

    Trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]  # stale: the getter has one
    stale = _telemetry._provider_globals(Trace, Metrics)  # type: ignore[arg-type]
    assert isinstance(stale[0], _telemetry._PublicGetters)
    assert _telemetry._provider_globals(trace, metrics)[0] is trace  # the real API: as laid out


def test_without_the_private_meter_module_telemetry_still_records() -> None:
    """opentelemetry.metrics._internal not importable (as if moved): the SDK says so once
    at DEBUG, reads the providers through the public getters and still records a span
    once an SDK provider is set after the client was made."""
    code = """
import asyncio, json, logging, sys
import opentelemetry.metrics
del opentelemetry.metrics._internal
sys.modules["opentelemetry.metrics._internal"] = None  # import fails from here on
records = []
handler = logging.Handler()
handler.emit = records.append
logger = logging.getLogger("accountapi")
logger.addHandler(handler)
logger.setLevel(logging.DEBUG)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from accountapi import AccountClient
from accountapi.testing import Emulator

async def main():
    async with Emulator() as emu:
        async with AccountClient(emu.add_key(), base_url=emu.url) as client:
            private = client._calls._telemetry.reads_private_globals
            await client.account.profile()
            spans = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(spans))
            trace.set_tracer_provider(provider)
            await client.account.profile()
    said = [r.getMessage() for r in records if "public getters" in r.getMessage()]
    print(json.dumps([private, len(spans.get_finished_spans()), said]))

asyncio.run(main())
"""
    private, spans, said = _probe(code)
    assert private is False
    assert spans == 2
    assert len(said) == 1


async def test_budget_refusals_joined_reads_and_the_budget_level_are_recorded(
    otel: None, emu: Emulator
) -> None:
    """Under overload (issue 24): a refused retry counts in accountapi.retry_budget.refused
    (by cause), each joined read in accountapi.call.joined, and the gauge
    accountapi.retry_budget.level reports the budget's tokens; the canary key is in none
    of the spans, events or metrics."""
    emu.add_key(key=CANARY, latency=0.05)
    clock = VirtualClock()
    budget = RetryBudget(capacity=5, retry_cost=5, refill=0)
    async with AccountClient(
        CANARY, base_url=emu.url, clock=clock, retry_budget=budget, coalesce=True
    ) as client:
        emu.script(CANARY, [Fault.status(503)] * 2)
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.account.profile()
        assert caught.value.retry_budget_exhausted
        await asyncio.gather(*(client.account.profile() for _ in range(4)))
    recorded = _collect()
    (refused,) = recorded["accountapi.retry_budget.refused"]
    assert refused[0]["error.type"] == "503"
    assert refused[0]["url.template"] == "/v1/account/profile"
    assert refused[1].value == 1
    (joined,) = recorded["accountapi.call.joined"]
    assert joined[1].value == 3
    assert joined[0]["url.template"] == "/v1/account/profile"
    levels = {
        p[0]["accountapi.retry_budget.number"]: p[1].value
        for p in recorded["accountapi.retry_budget.level"]
    }
    assert levels[budget.number] == 0
    spans = _spans()
    assert len(_calls()) == 2  # the failed call, and the one shared read (joiners make none)
    dumped = "\n".join(s.to_json() for s in spans)
    dumped += repr([labels for points in recorded.values() for labels, _ in points])
    assert "CANARYcanary" not in dumped
    assert "SECRET" not in dumped


def test_error_types_are_public_names_without_touching_deprecated_aliases() -> None:
    """error.type names a class where its package exports it; a gate signal is named in
    accountapi.gates (its home), and naming it reads no deprecated top-level alias
    (which would warn: an error in this suite)."""
    from accountapi.gates import GateTimeout, KeyCoolingDown

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _telemetry.error_type(GateTimeout("x")) == "accountapi.gates.GateTimeout"
        assert _telemetry.error_type(KeyCoolingDown(1.0)) == "accountapi.gates.KeyCoolingDown"
        assert _telemetry.error_type(RateLimitError("x", status=429)) == "429"  # a status: its code
        assert _telemetry.public_name(RateLimitError) == "accountapi.RateLimitError"
        assert _telemetry.error_type(asyncio.CancelledError()) == "asyncio.CancelledError"
