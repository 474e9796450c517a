"""The suite's entry point: parse options, run each section, print, write JSON and chart.

A section that crashes is reported and makes the exit status 1 (the suite must not rot);
a missed target never does: targets are reported, not asserted.
"""

from __future__ import annotations

import argparse
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import _environment
from ._load import level_malloc, uvloop_available
from ._machine import other_cpu_now, settle_allocator, wait_for_quiet
from ._results import add_record_flag, results_dir
from ._servers import EmulatorProcess, ResponderProcess, cpu_plan
from ._variants import balances_available, throughput_variants
from .decode import DecodeRow, run_decode
from .manykeys import ManyKeysRow, run_many_keys
from .report import markdown_tables, write_chart, write_json
from .retry import RetryAccuracy, RetryTrial, SuccessPathCost, run_retry_accuracy, run_success_path
from .targets import evaluate
from .throughput import ThroughputRow, run_throughput

__all__ = ["main"]

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("decode", "throughput", "retry", "manykeys")
# The throughput variants also measured at concurrency 1 in a full run.
SERIAL_VARIANTS = frozenset({"raw", "raw_keys", "sdk", "sdk_keys", "httpx"})


@dataclass(frozen=True)
class Settings:
    """Counts and limits for one run; ``quick`` and ``full`` are the two presets."""

    requests: int
    rounds: int
    concurrencies: tuple[int, ...]
    round_time_limit: float
    warmup: int
    decode_number: int
    decode_repeat: int
    retry_delta_trials: int
    retry_date_trials: int
    success_calls: int
    many_keys: tuple[int, ...]
    many_keys_time_limit: float
    serial_requests: int  # requests per concurrency-1 run (0: none)


FULL = Settings(
    requests=10_000,
    rounds=5,
    concurrencies=(64, 256),
    round_time_limit=5.0,
    warmup=500,
    decode_number=20_000,
    decode_repeat=9,
    retry_delta_trials=10,
    retry_date_trials=4,
    success_calls=100_000,
    many_keys=(10_000, 100_000),
    many_keys_time_limit=150.0,
    serial_requests=2_000,
)
QUICK = Settings(
    requests=256,
    rounds=2,
    concurrencies=(64,),
    round_time_limit=0.4,
    warmup=64,
    decode_number=2_000,
    decode_repeat=3,
    retry_delta_trials=2,
    retry_date_trials=1,
    success_calls=10_000,
    many_keys=(1_000, 2_000),
    many_keys_time_limit=20.0,
    serial_requests=0,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="accountapi benchmarks against loopback servers (see benchmarks/README.md).",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds, small counts (CI)")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument("--requests", type=int, help="requests per throughput run")
    parser.add_argument("--rounds", type=int, help="interleaved throughput rounds")
    parser.add_argument("--no-pin", action="store_true", help="do not pin client/server CPUs")
    parser.add_argument("--no-uvloop", action="store_true", help="skip the uvloop variants")
    parser.add_argument("--no-httpx", action="store_true", help="skip the httpx variant")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="S",
        help="first wait up to S seconds for other processes to go idle (full run: 90)",
    )
    parser.add_argument("--output", type=Path, help="JSON path (default: results/runs/latest.json)")
    parser.add_argument(
        "--chart", type=Path, help="PNG path (default: results/runs/throughput.png)"
    )
    add_record_flag(parser)
    return parser


class Suite:
    """Runs sections, remembering crashes instead of stopping at the first."""

    def __init__(self) -> None:
        self.failures: dict[str, str] = {}

    def section(self, name: str, run: Callable[[], T], empty: T) -> T:
        print(f"\n== {name}", flush=True)
        started = time.perf_counter()
        try:
            result = run()
        except Exception as exc:
            traceback.print_exc()
            self.failures[name] = f"{type(exc).__name__}: {exc}"
            return empty
        print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
        return result


def main(argv: Sequence[str] | None = None) -> int:
    settle_allocator()
    args = _parser().parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.requests is not None or args.rounds is not None:
        settings = Settings(
            **{
                **settings.__dict__,
                "requests": args.requests or settings.requests,
                "rounds": args.rounds or settings.rounds,
            }
        )
    sections = set(args.only or SECTIONS)
    plan = cpu_plan(not args.no_pin)
    plan.pin_client()
    level_malloc()
    with_uvloop = uvloop_available() and not args.no_uvloop
    has_balances = balances_available()
    suite = Suite()
    wait = args.wait_quiet if args.wait_quiet is not None else (0.0 if args.quick else 90.0)
    other_load = wait_for_quiet(wait) if wait > 0 else other_cpu_now(0.5)
    if other_load is not None:
        print(f"other processes were using {other_load:.0%} of a CPU when the run started")
    started = time.perf_counter()
    print(f"accountapi benchmarks ({'quick' if args.quick else 'full'} run; {plan.describe()})")

    decode: list[DecodeRow] = []
    throughput: list[ThroughputRow] = []
    retry: list[RetryAccuracy] = []
    trials: list[RetryTrial] = []
    success: list[SuccessPathCost] = []
    many: list[ManyKeysRow] = []
    responder_final: dict[str, Any] | None = None
    skipped = []
    if not has_balances:
        skipped.append("accountapi balances(): not available (AccountClient has no balances)")
    if not with_uvloop:
        skipped.append("uvloop variants: uvloop not installed or --no-uvloop")
    servers = {
        "throughput": "fast responder, own process, "
        + ("uvloop" if uvloop_available() else "asyncio")
        + " Protocol, loopback",
        "many_keys": "accountapi.testing.Emulator, own process, loopback; one client process per count",
        "retry": "accountapi.testing.Emulator, own process, loopback",
    }

    if "decode" in sections:
        decode = suite.section(
            "decode",
            lambda: run_decode(number=settings.decode_number, repeat=settings.decode_repeat),
            [],
        )
    if "throughput" in sections:

        def throughput_section() -> list[ThroughputRow]:
            nonlocal responder_final
            variants = throughput_variants(with_uvloop=with_uvloop, with_httpx=not args.no_httpx)
            with ResponderProcess(plan, uvloop=uvloop_available()) as responder:
                rows = run_throughput(
                    variants,
                    responder,
                    concurrencies=settings.concurrencies,
                    requests=settings.requests,
                    rounds=settings.rounds,
                    time_limit=settings.round_time_limit,
                    warmup=settings.warmup,
                )
                if settings.serial_requests:
                    # One request at a time: where httpx's gap is its pool under
                    # concurrency rather than its per-request cost (issue 13).
                    serial = [v for v in variants if v.name in SERIAL_VARIANTS]
                    rows += run_throughput(
                        serial,
                        responder,
                        concurrencies=(1,),
                        requests=settings.serial_requests,
                        rounds=settings.rounds,
                        time_limit=settings.round_time_limit,
                        warmup=settings.warmup // 10,
                    )
            responder_final = responder.final_stats
            return rows

        throughput = suite.section("throughput", throughput_section, [])
    if "retry" in sections:

        def retry_section() -> tuple[list[RetryAccuracy], list[RetryTrial]]:
            with EmulatorProcess(plan) as emulator:
                return run_retry_accuracy(
                    emulator,
                    delta_trials=settings.retry_delta_trials,
                    date_trials=settings.retry_date_trials,
                )

        no_retry: tuple[list[RetryAccuracy], list[RetryTrial]] = ([], [])
        retry, trials = suite.section("retry accuracy", retry_section, no_retry)
        success = suite.section(
            "retry success path",
            lambda: run_success_path(calls=settings.success_calls, repeat=5),
            [],
        )
    if "manykeys" in sections:
        # profile(api_key=...) on a worker pool stands in while balances() does not exist.
        modes = ["balances"] if has_balances else ["profile"]

        def many_section() -> list[ManyKeysRow]:
            with EmulatorProcess(plan) as emulator:
                return run_many_keys(
                    emulator,
                    plan,
                    counts=settings.many_keys,
                    modes=modes,
                    time_limit=settings.many_keys_time_limit,
                )

        many = suite.section("many keys", many_section, [])

    targets = evaluate(
        throughput=throughput,
        decode=decode,
        many_keys=many,
        retry=retry,
        balances_available=has_balances,
    )
    tables = markdown_tables(
        throughput=throughput,
        skipped=skipped,
        decode=decode,
        many_keys=many,
        retry=retry,
        success_path=success,
        targets=targets,
        servers=servers,
    )
    print("\n" + tables)
    if args.quick:
        print("\n(quick run: small counts; PASS/MISS here are indicative, the full run decides)")
    for name, failure in suite.failures.items():
        print(f"\nSECTION FAILED: {name}: {failure}")

    stem = "quick" if args.quick else "latest"
    folder = results_dir(args.record and not args.quick)
    out = args.output or folder / f"{stem}.json"
    chart = args.chart or folder / ("quick-throughput.png" if args.quick else "throughput.png")
    write_json(
        out,
        {
            "mode": "quick" if args.quick else "full",
            "settings": settings,
            "environment": _environment.describe(),
            "cpu_pinning": plan.describe(),
            "other_processes_cpu_at_start": other_load,
            "servers": servers,
            "balances_available": has_balances,
            "skipped": skipped,
            "targets": targets,
            "throughput": throughput,
            "responder_final": responder_final,
            "decode": decode,
            "retry_accuracy": retry,
            "retry_trials": trials,
            "retry_success_path": success,
            "many_keys": many,
            "failures": suite.failures,
            "duration_s": time.perf_counter() - started,
        },
    )
    print(f"\nresults written to {out}")
    if throughput or decode:
        print(write_chart(chart, throughput, decode))
    print(f"total {time.perf_counter() - started:.1f} s")
    return 1 if suite.failures else 0
