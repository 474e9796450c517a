"""Throughput: every client against the same responder, in interleaved rounds.

Each round runs every variant once (the order rotates from round to round), each on a
fresh event loop in this process, with the same request count and concurrency. A
variant's ratio is taken against raw aiohttp *in the same round*, then summarised as
median (min-max) over the rounds. The responder's CPU time is read before and after
every run to show whether it, rather than the client, was the limit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from ._load import run_on_loop
from ._machine import busy_cpu_seconds
from ._servers import ResponderProcess
from ._stats import Spread, spread
from ._variants import Variant

__all__ = ["RoundResult", "ThroughputRow", "run_throughput"]


@dataclass(frozen=True)
class RoundResult:
    variant: str
    concurrency: int
    round: int
    done: int
    errors: int
    elapsed_s: float
    rps: float
    client_cpu: float  # client CPU seconds / wall seconds
    client_us_per_request: float  # client CPU per request: robust to a busy machine
    server_cpu: float  # responder CPU seconds / wall seconds
    server_requests: int
    other_cpu: float  # CPU of every other process on the machine / wall seconds
    capped: bool


@dataclass(frozen=True)
class ThroughputRow:
    name: str
    label: str
    loop: str
    concurrency: int
    requests: int
    rps: Spread
    ratio: Spread  # vs raw aiohttp (asyncio), same round
    baseline: str
    vs_baseline: Spread  # vs the variant's own baseline, same round
    client_cpu: float  # median
    client_us_per_request: Spread
    cpu_ratio: Spread  # raw aiohttp's client CPU per request / this one's, same round
    server_cpu_max: float
    other_cpu_max: float
    errors: int
    capped_rounds: int
    note: str
    rounds: list[RoundResult] = field(repr=False)


def _one_run(
    variant: Variant,
    responder: ResponderProcess,
    *,
    requests: int,
    concurrency: int,
    time_limit: float,
    round_no: int,
) -> RoundResult:
    busy0 = busy_cpu_seconds()
    before = responder.stats()
    client0 = time.process_time()
    load = run_on_loop(
        variant.loop, partial(variant.run, responder.url, requests, concurrency, time_limit)
    )
    client_cpu = time.process_time() - client0
    after = responder.stats()
    busy1 = busy_cpu_seconds()
    busy = load.elapsed if load.elapsed > 0 else float("nan")
    server_cpu = after.cpu_s - before.cpu_s
    other = float("nan")
    if busy0 is not None and busy1 is not None:
        window = after.wall - before.wall
        other = max(0.0, (busy1 - busy0) - client_cpu - server_cpu) / window
    return RoundResult(
        variant=variant.name,
        concurrency=concurrency,
        round=round_no,
        done=load.done,
        errors=load.errors,
        elapsed_s=load.elapsed,
        rps=load.rps,
        client_cpu=load.cpu_s / busy,
        client_us_per_request=load.cpu_s / load.done * 1e6 if load.done else float("nan"),
        server_cpu=server_cpu / busy,
        server_requests=after.requests - before.requests - 1,  # minus the stats request
        other_cpu=other,
        capped=load.capped,
    )


def run_throughput(
    variants: Sequence[Variant],
    responder: ResponderProcess,
    *,
    concurrencies: Sequence[int],
    requests: int,
    rounds: int,
    time_limit: float,
    warmup: int,
    progress: bool = True,
) -> list[ThroughputRow]:
    """All variants x concurrencies x rounds, interleaved; one summary row per pair."""
    rows: list[ThroughputRow] = []
    for concurrency in concurrencies:
        for variant in variants:  # warm imports, caches and generated code; not recorded
            run_on_loop(
                variant.loop, partial(variant.run, responder.url, warmup, concurrency, time_limit)
            )
        results: dict[str, list[RoundResult]] = {v.name: [] for v in variants}
        for round_no in range(rounds):
            shift = round_no % len(variants)
            for variant in [*variants[shift:], *variants[:shift]]:
                result = _one_run(
                    variant,
                    responder,
                    requests=requests,
                    concurrency=concurrency,
                    time_limit=time_limit,
                    round_no=round_no,
                )
                results[variant.name].append(result)
                if progress:
                    print(
                        f"  c={concurrency:<3} round {round_no + 1}/{rounds} "
                        f"{variant.name:<12} {result.rps:>9,.0f} req/s "
                        f"(CPU: client {result.client_cpu:.0%}, server {result.server_cpu:.0%}, "
                        f"other processes {result.other_cpu:.0%})",
                        flush=True,
                    )
        rows += [_summarise(v, concurrency, requests, results) for v in variants]
    return rows


def _ratios(mine: list[RoundResult], theirs: list[RoundResult]) -> Spread:
    return spread([a.rps / b.rps for a, b in zip(mine, theirs, strict=True) if b.rps > 0])


def _summarise(
    variant: Variant, concurrency: int, requests: int, results: dict[str, list[RoundResult]]
) -> ThroughputRow:
    mine = results[variant.name]
    return ThroughputRow(
        name=variant.name,
        label=variant.label,
        loop=variant.loop,
        concurrency=concurrency,
        requests=requests,
        rps=spread([r.rps for r in mine]),
        ratio=_ratios(mine, results["raw"]),
        baseline=variant.baseline,
        vs_baseline=_ratios(mine, results[variant.baseline]),
        client_cpu=spread([r.client_cpu for r in mine]).median,
        client_us_per_request=spread([r.client_us_per_request for r in mine]),
        cpu_ratio=spread(
            [
                raw.client_us_per_request / r.client_us_per_request
                for r, raw in zip(mine, results["raw"], strict=True)
                if r.client_us_per_request > 0
            ]
        ),
        server_cpu_max=max(r.server_cpu for r in mine),
        other_cpu_max=max(r.other_cpu for r in mine),
        errors=sum(r.errors for r in mine),
        capped_rounds=sum(r.capped for r in mine),
        note=variant.note,
        rounds=mine,
    )
