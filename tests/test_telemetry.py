"""OpenTelemetry: a CLIENT span and metrics per call, through the global providers.

The providers are opentelemetry-sdk's own, with its in-memory span exporter and metric
reader, installed once for the process (OpenTelemetry allows one global provider). A
sampler switch keeps every other test module's calls unrecorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
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
    RateLimitError,
    RetryBudget,
    RetryPolicy,
    ServiceUnavailableError,
    SyncAccountClient,
    _telemetry,
)
from accountapi._calls import CallPath
from accountapi.testing import Emulator, Fault, VirtualClock

CANARY = "dpct_CANARYcanary0123456789SECRET"


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


@pytest.fixture
def otel() -> Iterator[None]:
    with _installed:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            provider = TracerProvider(sampler=_SWITCH)
            provider.add_span_processor(_BROKEN)
            provider.add_span_processor(SimpleSpanProcessor(_SPANS))
            trace.set_tracer_provider(provider)
            metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))
    _SPANS.clear()
    _METRICS.get_metrics_data()  # drain what earlier tests recorded
    _SWITCH.on = True
    try:
        yield
    finally:
        _SWITCH.on = False
        _BROKEN.raise_on = frozenset()


def _spans() -> list[ReadableSpan]:
    return [
        s
        for s in _SPANS.get_finished_spans()
        if s.instrumentation_scope is not None and s.instrumentation_scope.name == "accountapi"
    ]


def _collect() -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Metric name -> (attributes, point) of what was recorded since the last collection."""
    data = _METRICS.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = [(dict(p.attributes or {}), p) for p in metric.data.data_points]
                found.setdefault(metric.name, []).extend(points)
    return found


@pytest.fixture
async def emu() -> Iterator[Emulator]:  # type: ignore[misc]
    async with Emulator() as emulator:
        yield emulator


async def test_a_call_is_one_client_span_with_http_attributes(otel: None, emu: Emulator) -> None:
    """GET profile: a CLIENT span named by method and template, status 200, one attempt."""
    key = emu.add_key()
    async with AccountClient(key, base_url=emu.url) as client:
        await client.account.profile()
        await client.account.dismiss_notifications()
    get, post = _spans()
    assert get.name == "GET /v1/account/profile"
    assert get.kind is SpanKind.CLIENT
    port = int(emu.url.rsplit(":", 1)[1])
    assert dict(get.attributes or {}) == {
        "http.request.method": "GET",
        "url.template": "/v1/account/profile",
        "server.address": "127.0.0.1",
        "server.port": port,
        "http.response.status_code": 200,
        "accountapi.attempts": 1,
    }
    assert get.status.status_code is StatusCode.UNSET
    assert post.name == "POST /v1/account/notifications/dismiss"
    assert post.attributes is not None
    assert post.attributes["http.response.status_code"] in (200, 204)


async def test_retries_are_span_events_and_counted_by_cause(otel: None, emu: Emulator) -> None:
    """A 429 then a 503 then success: two retry events with cause and wait, counters by cause,
    and a duration (on the injected clock) that includes the Retry-After wait."""
    key = emu.add_key()
    emu.script(key, [Fault.rate_limited(2), Fault.status(503)])
    clock = VirtualClock()
    policy = RetryPolicy(backoff_initial=0.25, backoff_max=0.25)
    async with AccountClient(key, base_url=emu.url, clock=clock, retry=policy) as client:
        await client.account.profile()
    (span,) = _spans()
    assert span.attributes is not None
    assert span.attributes["accountapi.attempts"] == 3
    assert span.attributes["http.response.status_code"] == 200
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


async def test_a_failed_call_marks_the_span_as_an_error(otel: None, emu: Emulator) -> None:
    """A 401 is final: ERROR status, error.type "401", the exception recorded; a failed
    connection reports the SDK error's class."""
    async with AccountClient("dpct_unknown_key_abcdef", base_url=emu.url) as client:
        with pytest.raises(AuthenticationError):
            await client.account.profile()
    (span,) = _spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "401"
    assert span.attributes["http.response.status_code"] == 401
    assert [e.name for e in span.events] == ["exception"]
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
    (span,) = _spans()
    assert span.attributes is not None
    assert span.attributes["error.type"] == "APIConnectionError"
    assert "http.response.status_code" not in span.attributes


async def test_a_cancelled_call_ends_its_span_as_cancelled(otel: None, emu: Emulator) -> None:
    """A caller that cancels (a web request that went away) still ends the span, with
    status ERROR and error.type CancelledError, and records its duration."""
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
    (span,) = _spans()
    assert span.end_time is not None
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "CancelledError"
    (duration,) = _collect()["accountapi.call.duration"]
    assert duration[0]["error.type"] == "CancelledError"


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
    assert len(spans) == 6
    dumped = "\n".join(s.to_json() for s in spans)
    data = _METRICS.get_metrics_data()
    assert data is not None
    dumped += data.to_json()
    assert "CANARYcanary" not in dumped
    assert "SECRET" not in dumped
    assert "exception.stacktrace" in dumped  # the text checked is real
    assert "accountapi.retry" in dumped
    # Control: the same dump shows a key that an application put on its own span.
    with trace.get_tracer("app").start_as_current_span("control", attributes={"k": CANARY}):
        pass
    assert "CANARYcanary" in "\n".join(s.to_json() for s in _SPANS.get_finished_spans())


async def test_a_call_inside_the_applications_span_is_its_child(otel: None, emu: Emulator) -> None:
    """The SDK's span is a child of the caller's current span, for the async and the sync
    client (whose calls run on its own loop thread)."""
    key = emu.add_key()
    tracer = trace.get_tracer("app")
    async with AccountClient(key, base_url=emu.url) as client:
        with tracer.start_as_current_span("handler") as parent:
            await client.account.profile()
    (child,) = _spans()
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id

    _SPANS.clear()

    def in_a_thread() -> int:
        with (
            SyncAccountClient(key, base_url=emu.url) as sync,
            tracer.start_as_current_span("view") as view,
        ):
            sync.account.profile()
            return view.get_span_context().span_id

    view_id = await asyncio.to_thread(in_a_thread)
    (child,) = _spans()
    assert child.parent is not None
    assert child.parent.span_id == view_id


def test_without_opentelemetry_the_call_path_is_the_untraced_one() -> None:
    """With opentelemetry-api not importable the client binds the untraced path itself (no
    wrapper per call) and calls work."""
    probe = """
import asyncio, json, sys
sys.modules["opentelemetry"] = None  # as if not installed
from accountapi import AccountClient
from accountapi import _telemetry
from accountapi._calls import CallPath
from accountapi.testing import Emulator

async def main():
    async with Emulator() as emu:
        key = emu.add_key()
        async with AccountClient(key, base_url=emu.url) as client:
            untraced = client._calls.request.__func__ is CallPath._untraced
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


async def test_with_opentelemetry_the_traced_path_is_bound(emu: Emulator) -> None:
    async with AccountClient(emu.add_key(), base_url=emu.url) as client:
        assert client._calls.request.__func__ is CallPath._traced  # type: ignore[attr-defined]


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
    assert names == ["GET /v1/account/profile"]


@pytest.mark.parametrize("where", ["start", "end", "start+end"])
async def test_a_span_processor_that_raises_never_fails_a_call(
    otel: None,
    emu: Emulator,
    where: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An application's span processor raising on a span's start or end: the call's
    answer (or its own error, after a retry) still reaches the caller, the first failure
    is logged as a WARNING and the rest at DEBUG, and no key is in the log."""
    monkeypatch.setattr(_telemetry, "_failures", [])  # as in a fresh process
    _BROKEN.raise_on = frozenset(where.split("+"))
    key, bad = emu.add_key({"balance_eur": "2.500000"}), "dpct_" + "u" * 32
    emu.script(key, [Fault.status(503)])
    clock = VirtualClock()
    with caplog.at_level("DEBUG", logger="accountapi"):
        async with AccountClient(key, base_url=emu.url, clock=clock) as client:
            profile = await client.account.profile()
            with pytest.raises(AuthenticationError):
                await client.account.profile(api_key=bad)
    assert str(profile.balance_eur) == "2.500000"
    assert emu.attempts(key) == 2
    failures = [r.levelname for r in caplog.records if "OpenTelemetry raised" in r.getMessage()]
    assert failures == ["WARNING"] + ["DEBUG"] * (len(failures) - 1)
    assert len(failures) >= 2
    assert all(key not in r.getMessage() and bad not in r.getMessage() for r in caplog.records)
    assert trace.get_current_span() is trace.INVALID_SPAN  # no context left attached


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
    assert len(spans) == 2  # the failed call, and the one shared read (joiners make none)
    dumped = "\n".join(s.to_json() for s in spans)
    dumped += repr([labels for points in recorded.values() for labels, _ in points])
    assert "CANARYcanary" not in dumped
    assert "SECRET" not in dumped
