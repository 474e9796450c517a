"""Under overload (issue 24): the retry budget and single-flight reads, side by side.

    python -m benchmarks.overload [--quick] [--no-pin]

One emulator process on 127.0.0.1 (``benchmarks/emulator_host.py``) serves three
scenarios, each run with the feature on and off against a fresh client in this process
(the system clock: every backoff is really waited):

- **Outage**: every request answered 503; 2,000 calls at concurrency 200 over 2,000
  keys (so the per-key limit plays no part). Upstream requests per call and the time to
  the error. Then the service **recovers** (the same client, its budget as the outage
  left it): 2,000 more calls at once, the time from recovery to the first success and
  the share of calls that succeed.
- **Sparse faults**: 5% of requests answered 503 (seeded), 10,000 calls at concurrency
  200: every call should still succeed with the budget on.
- **Hot key**: 1,000 ``profile()`` calls on one key with a 20 ms service time, all at
  once, and spread evenly over one second: upstream requests and latency, coalescing on
  and off.

Counts and time are bounded (every phase is cut after ``_PHASE_LIMIT`` seconds and
marked). Targets are reported PASS or MISS, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from accountapi import (
    AccountAPIError,
    AccountClient,
    Limits,
    RetryBudget,
    RetryEvent,
)

from ._keys import bench_key
from ._servers import EmulatorProcess, cpu_plan

__all__ = ["main"]

_PHASE_LIMIT: Final = 180.0  # seconds; a phase still running then is cut and marked
_SERVICE_TIME: Final = 0.020
_OUTAGE_PER_CALL_MAX: Final = 1.2
_RECOVERY_MAX_S: Final = 1.0
_HOT_P99_SERVICE_TIMES: Final = 3.0
_HOT_UPSTREAM_MAX: Final = 0.05


@dataclass
class Calls:
    """What one phase's calls did: per-call latency and outcome."""

    started: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, every call
    ok_at: list[float] = field(default_factory=list)  # when each success ended (perf_counter)
    failures: int = 0
    refused: int = 0  # failures flagged retry_budget_exhausted
    requests: int = 0  # upstream, as the emulator counted them
    capped: bool = False

    @property
    def calls(self) -> int:
        return len(self.latencies)

    @property
    def successes(self) -> int:
        return len(self.ok_at)

    def per_call(self) -> float:
        return self.requests / self.calls if self.calls else math.nan

    def pct(self, q: float) -> float:
        """The ``q`` quantile of latency, in milliseconds (nearest rank)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))] * 1000


async def _run(
    call: Callable[[int], Awaitable[Any]], count: int, concurrency: int, spread: float = 0.0
) -> Calls:
    """``count`` calls, ``concurrency`` at a time (or each starting at ``i * spread /
    count`` seconds when ``spread`` is given), timed one by one."""
    out = Calls(started=time.perf_counter())
    taken = 0

    async def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            await call(i)
        except AccountAPIError as exc:
            out.failures += 1
            out.refused += exc.retry_budget_exhausted
        else:
            out.ok_at.append(time.perf_counter())
        out.latencies.append(time.perf_counter() - t0)

    async def worker() -> None:
        nonlocal taken
        while taken < count:
            i = taken
            taken += 1
            await one(i)

    async def delayed(i: int) -> None:
        await asyncio.sleep(i * spread / count)
        await one(i)

    runs = [delayed(i) for i in range(count)] if spread else [worker() for _ in range(concurrency)]
    try:
        async with asyncio.timeout(_PHASE_LIMIT):
            await asyncio.gather(*runs)
    except TimeoutError:
        out.capped = True
    return out


# -- the scenarios ---------------------------------------------------------------------


@dataclass
class OutageRow:
    budget: str
    outage: Calls
    recovery: Calls
    recovered_at: float  # perf_counter when the emulator was switched back
    level_after_outage: int | None
    level_after_recovery: int | None

    def first_success_s(self) -> float:
        oks = self.recovery.ok_at
        return min(oks) - self.recovered_at if oks else math.inf


async def _outage(
    emulator: EmulatorProcess, budget: RetryBudget | None, calls: int, concurrency: int
) -> OutageRow:
    keys = [bench_key("outage", i) for i in range(calls)]
    limits = Limits(max_connections=concurrency)
    async with AccountClient(base_url=emulator.url, retry_budget=budget, limits=limits) as client:

        async def profile(i: int) -> Any:
            return await client.account.profile(api_key=keys[i])

        emulator.call("fault_mix", p=1.0, status=503)
        emulator.call("reset")
        down = await _run(profile, calls, concurrency)
        down.requests = emulator.call("requests")["requests"]
        after_outage = None if budget is None else budget.level
        emulator.call("fault_mix", p=0.0, status=503)
        emulator.call("reset")
        recovered_at = time.perf_counter()
        up = await _run(profile, calls, concurrency)
        up.requests = emulator.call("requests")["requests"]
    return OutageRow(
        "on (default)" if budget is not None else "off",
        down,
        up,
        recovered_at,
        after_outage,
        None if budget is None else budget.level,
    )


@dataclass
class SparseRow:
    budget: str
    calls: Calls
    lowest_level: int | None


async def _sparse(
    emulator: EmulatorProcess, budget: RetryBudget | None, calls: int, concurrency: int
) -> SparseRow:
    keys = [bench_key("outage", i % 2000) for i in range(calls)]
    levels: list[int] = []

    def on_retry(event: RetryEvent) -> None:
        if budget is not None:
            levels.append(budget.level)

    limits = Limits(max_connections=concurrency)
    async with AccountClient(
        base_url=emulator.url, retry_budget=budget, limits=limits, on_retry=on_retry
    ) as client:

        async def profile(i: int) -> Any:
            return await client.account.profile(api_key=keys[i])

        emulator.call("fault_mix", p=0.05, status=503, seed=24)
        emulator.call("reset")
        run = await _run(profile, calls, concurrency)
        run.requests = emulator.call("requests")["requests"]
        emulator.call("fault_mix", p=0.0, status=503)
    lowest = None if budget is None else min(levels, default=budget.capacity)
    return SparseRow("on (default)" if budget is not None else "off", run, lowest)


@dataclass
class HotRow:
    arrival: str
    coalesce: bool
    calls: Calls


async def _hot(emulator: EmulatorProcess, coalesce: bool, calls: int, spread: float) -> HotRow:
    key = bench_key("hotkey", 0)
    async with AccountClient(key, base_url=emulator.url, coalesce=coalesce) as client:
        await client.account.profile()  # the connection pool warm, as in a running backend
        emulator.call("reset")
        run = await _run(lambda _: client.account.profile(), calls, calls, spread=spread)
        run.requests = emulator.call("requests")["requests"]
    arrival = "all at once" if not spread else f"over {spread:g} s"
    return HotRow(arrival, coalesce, run)


# -- report ----------------------------------------------------------------------------


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _capped(calls: Calls) -> str:
    return " (time-capped)" if calls.capped else ""


def _report(
    outage: Sequence[OutageRow], sparse: Sequence[SparseRow], hot: Sequence[HotRow]
) -> list[tuple[str, str, str, str]]:
    print("\n### Outage: every request 503, then recovery\n")
    print(
        "| budget | calls | upstream requests | per call | p50 to error | p99 to error "
        "| refused by budget | budget after | first success after recovery "
        "| recovery calls ok | budget after recovery |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in outage:
        print(
            f"| {r.budget} | {r.outage.calls:,}{_capped(r.outage)} | {r.outage.requests:,} "
            f"| {r.outage.per_call():.2f} | {_ms(r.outage.pct(0.5))} ms "
            f"| {_ms(r.outage.pct(0.99))} ms | {r.outage.refused:,} "
            f"| {'-' if r.level_after_outage is None else r.level_after_outage} "
            f"| {r.first_success_s() * 1000:,.0f} ms "
            f"| {r.recovery.successes:,}/{r.recovery.calls:,}{_capped(r.recovery)} "
            f"| {'-' if r.level_after_recovery is None else r.level_after_recovery} |"
        )
    print("\n### Sparse faults: 5% of requests 503\n")
    print(
        "| budget | calls | succeeded | failed | refused by budget | per call | p50 | p99 | lowest level |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for s in sparse:
        c = s.calls
        print(
            f"| {s.budget} | {c.calls:,}{_capped(c)} | {c.successes:,} | {c.failures:,} "
            f"| {c.refused:,} | {c.per_call():.3f} | {_ms(c.pct(0.5))} ms | {_ms(c.pct(0.99))} ms "
            f"| {'-' if s.lowest_level is None else s.lowest_level} |"
        )
    print(f"\n### Hot key: one key, {_SERVICE_TIME * 1000:.0f} ms service time\n")
    print(
        "| arrivals | coalesce | calls | upstream requests | share | p50 | p99 | p99 in service times |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for h in hot:
        c = h.calls
        print(
            f"| {h.arrival} | {'on' if h.coalesce else 'off'} | {c.calls:,}{_capped(c)} "
            f"| {c.requests:,} | {c.requests / max(c.calls, 1):.1%} | {_ms(c.pct(0.5))} ms "
            f"| {_ms(c.pct(0.99))} ms | {c.pct(0.99) / (_SERVICE_TIME * 1000):.1f} |"
        )
    targets: list[tuple[str, str, str, str]] = []
    for r in outage:
        if r.budget != "off":
            targets.append(
                (
                    "outage: requests per call, budget on",
                    f"≤ {_OUTAGE_PER_CALL_MAX}",
                    f"{r.outage.per_call():.2f}",
                    _verdict(r.outage.per_call() <= _OUTAGE_PER_CALL_MAX and not r.outage.capped),
                )
            )
            ok = r.first_success_s() <= _RECOVERY_MAX_S and r.recovery.successes == r.recovery.calls
            targets.append(
                (
                    "recovery: calls succeed again, budget on",
                    f"first success ≤ {_RECOVERY_MAX_S:g} s, all succeed",
                    f"{r.first_success_s() * 1000:,.0f} ms, "
                    f"{r.recovery.successes:,}/{r.recovery.calls:,}",
                    _verdict(ok),
                )
            )
    for s in sparse:
        if s.budget != "off":
            c = s.calls
            targets.append(
                (
                    "sparse faults: every call succeeds, budget on",
                    f"{c.calls:,} of {c.calls:,}, none refused",
                    f"{c.successes:,}, {c.refused} refused",
                    _verdict(c.successes == c.calls and c.refused == 0 and not c.capped),
                )
            )
    for h in hot:
        if h.coalesce and h.arrival == "all at once":
            c = h.calls
            limit = _HOT_P99_SERVICE_TIMES * _SERVICE_TIME * 1000
            targets.append(
                (
                    "hot key: p99 with coalescing",
                    f"≤ {_HOT_P99_SERVICE_TIMES:g} service times ({limit:.0f} ms)",
                    f"{_ms(c.pct(0.99))} ms",
                    _verdict(c.pct(0.99) <= limit),
                )
            )
            targets.append(
                (
                    "hot key: upstream requests with coalescing",
                    f"< {_HOT_UPSTREAM_MAX:.0%} of calls",
                    f"{c.requests:,} of {c.calls:,}",
                    _verdict(c.requests < _HOT_UPSTREAM_MAX * c.calls),
                )
            )
    print("\n### Targets\n")
    print("| target | wanted | measured | |")
    print("|---|---|---|---|")
    for name, wanted, measured, verdict in targets:
        print(f"| {name} | {wanted} | {measured} | **{verdict}** |")
    return targets


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


async def _all(
    emulator: EmulatorProcess, quick: bool
) -> tuple[list[OutageRow], list[SparseRow], list[HotRow]]:
    outage_calls, sparse_calls, hot_calls = (400, 2_000, 200) if quick else (2_000, 10_000, 1_000)
    concurrency = 200
    emulator.call("add_keys", prefix="outage", start=0, count=2_000)
    emulator.call("add_keys", prefix="hotkey", start=0, count=1, latency=_SERVICE_TIME)
    outage = [
        await _outage(emulator, RetryBudget(), outage_calls, concurrency),
        await _outage(emulator, None, outage_calls, concurrency),
    ]
    sparse = [
        await _sparse(emulator, RetryBudget(), sparse_calls, concurrency),
        await _sparse(emulator, None, sparse_calls, concurrency),
    ]
    hot = [
        await _hot(emulator, coalesce, hot_calls, spread)
        for spread in (0.0, 1.0)
        for coalesce in (True, False)
    ]
    return outage, sparse, hot


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.overload")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client/server CPUs")
    args = parser.parse_args(argv)
    plan = cpu_plan(not args.no_pin)
    plan.pin_client()
    started = time.perf_counter()
    with EmulatorProcess(plan) as emulator:
        outage, sparse, hot = asyncio.run(_all(emulator, args.quick))
    _report(outage, sparse, hot)
    print(
        f"\n{time.perf_counter() - started:.0f} s; emulator on 127.0.0.1 in its own process; "
        f"CPU: {plan.describe()}; python {sys.version.split()[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
