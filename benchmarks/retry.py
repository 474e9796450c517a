"""Retry-After accuracy against the emulator, and what retrying costs when nothing fails.

Accuracy: the emulator (its own process) answers a key's first request with a scripted
429 and serves the retry; the wait is read from the *server's* clock, as the time
between the two requests' arrivals (``Retry-After: 1``) or as the retry's arrival
against the HTTP-date asked for. Trials run concurrently, each on its own key, staggered
so their retries do not meet.

Cost: a bare ``await attempt()`` against the SDK's success path (the bare first attempt
inside the ``try`` that would hand a failure to ``Retrier.retry``) and against wrapping
each call in ``tenacity.AsyncRetrying`` (what the SDK avoids), in µs per call, with no
I/O at all.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tenacity import AsyncRetrying, stop_after_attempt

from accountapi import AccountAPIError, AccountClient, RetryEvent, key_hint
from accountapi._clock import SystemClock
from accountapi._config import DEFAULT_RETRY
from accountapi._retry import Retrier

from ._keys import bench_key
from ._servers import EmulatorProcess
from ._stats import Spread, spread

__all__ = [
    "RetryAccuracy",
    "RetryTrial",
    "SuccessPathCost",
    "run_retry_accuracy",
    "run_success_path",
]

_STAGGER = 0.15  # seconds between the starts of concurrent Retry-After: 1 trials
_DATE_LEAD = 2  # an HTTP-date trial asks for a whole second at least this far ahead


@dataclass(frozen=True)
class RetryTrial:
    kind: str  # "delta" or "date"
    asked_s: float  # the wait the server asked for, seen from the 429's arrival
    waited_s: float  # server view: second arrival minus first arrival
    error_ms: float  # waited minus asked (date: second arrival minus the HTTP-date)
    planned_s: float  # the wait the SDK announced to on_retry
    attempts: int
    statuses: list[int | None]


@dataclass(frozen=True)
class RetryAccuracy:
    kind: str
    label: str
    trials: int
    mean_error_ms: float
    max_error_ms: float
    min_error_ms: float
    early: int  # trials whose retry arrived before the asked time


@dataclass(frozen=True)
class SuccessPathCost:
    name: str
    label: str
    us: Spread


retries: dict[str, int] = {}  # retries per key hint, counted by on_retry


async def _trial(
    client: AccountClient, key: str, delay: float, planned: dict[str, float]
) -> tuple[str, int]:
    await asyncio.sleep(delay)
    await client.account.profile(api_key=key)
    return key, 1 + retries.get(key_hint(key), 0)


def run_retry_accuracy(
    emulator: EmulatorProcess, *, delta_trials: int, date_trials: int
) -> tuple[list[RetryAccuracy], list[RetryTrial]]:
    """Script one 429 per trial key, run all trials, and read the arrivals back."""
    emulator.call("reset")
    delta_keys = [bench_key("retrydelta", i) for i in range(delta_trials)]
    date_keys = [bench_key("retrydate", 100 + i) for i in range(date_trials)]
    for key in delta_keys:
        emulator.call("rate_limited", key=key, retry_after=1)
    targets = {
        key: float(emulator.call("rate_limited_date", key=key, lead=_DATE_LEAD + i)["target_wall"])
        for i, key in enumerate(date_keys)
    }
    planned: dict[str, float] = {}

    def on_retry(event: RetryEvent) -> None:
        planned[event.key_hint or "?"] = event.wait
        retries[event.key_hint or "?"] = retries.get(event.key_hint or "?", 0) + 1

    async def main() -> dict[str, int]:
        async with AccountClient(base_url=emulator.url, on_retry=on_retry) as client:
            runs = [_trial(client, k, i * _STAGGER, planned) for i, k in enumerate(delta_keys)]
            runs += [_trial(client, k, 0.0, planned) for k in date_keys]
            return dict(await asyncio.gather(*runs))

    attempts = asyncio.run(main())
    trials: list[RetryTrial] = []
    for key in [*delta_keys, *date_keys]:
        seen = emulator.call("arrivals", key=key)
        wall: list[float] = seen["wall"]
        statuses: list[int | None] = seen["status"]
        if len(wall) < 2:
            raise RuntimeError(f"expected a 429 and a retry for {key[-4:]}, saw {statuses}")
        hint = next((h for h in planned if h.endswith(key[-4:])), "?")
        if key in targets:
            asked = targets[key] - wall[0]
            error = wall[1] - targets[key]
            kind = "date"
        else:
            asked = 1.0
            error = wall[1] - wall[0] - asked
            kind = "delta"
        trials.append(
            RetryTrial(
                kind=kind,
                asked_s=asked,
                waited_s=wall[1] - wall[0],
                error_ms=error * 1000,
                planned_s=planned.get(hint, float("nan")),
                attempts=attempts[key],
                statuses=statuses,
            )
        )
    labels = {"delta": "Retry-After: 1", "date": "Retry-After: <HTTP-date>"}
    summary = []
    for kind, label in labels.items():
        errors = [t.error_ms for t in trials if t.kind == kind]
        if errors:
            summary.append(
                RetryAccuracy(
                    kind=kind,
                    label=label,
                    trials=len(errors),
                    mean_error_ms=sum(errors) / len(errors),
                    max_error_ms=max(errors),
                    min_error_ms=min(errors),
                    early=sum(e < 0 for e in errors),
                )
            )
    return summary, trials


async def _succeed(number: int) -> int:
    return number


async def _bare(calls: int) -> None:
    for _ in range(calls):
        await _succeed(1)


async def _sdk_retrier(calls: int) -> None:
    retrier = Retrier(DEFAULT_RETRY, max_retries=4, clock=SystemClock())
    hint = key_hint(bench_key("retry", 0))
    for _ in range(calls):
        # The shape of CallPath.request: bare first attempt, tenacity only on failure.
        try:
            await _succeed(1)
        except AccountAPIError as exc:
            if retrier.should_retry(exc):
                await retrier.retry(_succeed, exc, deadline=lambda: None, key_hint=hint)


async def _tenacity_per_call(calls: int) -> None:
    for _ in range(calls):
        async for attempt in AsyncRetrying(stop=stop_after_attempt(5), reraise=True):
            with attempt:
                await _succeed(1)


def run_success_path(*, calls: int, repeat: int) -> list[SuccessPathCost]:
    """µs per successful call for each way of wrapping it, best-of-``repeat`` medians."""
    cases = [
        ("bare", "await attempt() (no retry code)", _bare),
        ("retrier", "accountapi success path (first attempt bare)", _sdk_retrier),
        ("tenacity", "tenacity AsyncRetrying around every call", _tenacity_per_call),
    ]
    rows = []
    for name, label, run in cases:
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            asyncio.run(run(calls))
            samples.append((time.perf_counter() - t0) / calls * 1e6)
        rows.append(SuccessPathCost(name, label, spread(samples)))
    return rows
