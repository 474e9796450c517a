"""Client cost as CPU instructions per request, counted by valgrind (callgrind).

Wall-clock and CPU-time ratios on a shared 2-core VM swing by ±30% from run to run;
instruction counts do not. Each variant runs in its own process under
``valgrind --tool=callgrind`` twice, with a small and a larger request count against the
fast responder; the difference divided by the extra requests is the cost of one request,
free of start-up and import costs. Ratios are to raw aiohttp + ``json.loads``.

    python -m benchmarks.instructions [--small 200] [--large 1200] [--only raw,balances]

Needs ``valgrind`` (Debian's package); prints a table and writes
``benchmarks/results/instructions.json``. Loopback only, bounded counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

import aiohttp

from accountapi import AccountClient, Limits

from ._keys import bench_key
from ._machine import settle_allocator
from ._servers import ResponderProcess, cpu_plan

RESULTS: Final = Path(__file__).resolve().parent / "results" / "instructions.json"
CONCURRENCY: Final = 64
VARIANTS: Final = {
    "raw": "raw aiohttp + json.loads, one key",
    "sdk": "accountapi profile(), one key (10 in flight, the rest queued in the gate)",
    "sdk-distinct": "accountapi profile(api_key=k), a new key per request (no queueing)",
    "sdk-nogate": "accountapi profile(), one key, Limits(per_key=None)",
    "balances": "accountapi balances(), a new key per request",
    "sdk-no-otel": "as sdk, with opentelemetry not importable (the package absent)",
    "sdk-otel-sdk": "as sdk, with opentelemetry-sdk's TracerProvider and MeterProvider set",
}
DISTINCT: Final = frozenset({"sdk-distinct", "balances"})
_COLLECTED: Final = re.compile(r"Collected : (\d+)")


async def _drive(variant: str, url: str, requests: int) -> None:
    """The load for one variant: ``requests`` calls, CONCURRENCY at a time."""
    key = bench_key("instr", 0)
    counter = iter(range(requests))

    async def pool(call: object) -> None:
        async def worker() -> None:
            for index in counter:
                await call(index)  # type: ignore[operator]

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    if variant == "raw":
        async with aiohttp.ClientSession() as session:

            async def raw(_: int) -> None:
                headers = {"Authorization": "Bearer " + key}
                async with session.get(url + "/v1/account/profile", headers=headers) as resp:
                    json.loads(await resp.read())

            await pool(raw)
        return
    limits = Limits(per_key=None) if variant == "sdk-nogate" else Limits()
    # sdk-no-otel and sdk-otel-sdk drive the same load as sdk.
    # Input data, made up front (and only for the variants that use distinct keys).
    keys = [bench_key("instr", i) for i in range(requests)] if variant in DISTINCT else []
    async with AccountClient(key, base_url=url, limits=limits) as client:
        if variant == "balances":
            async with client.balances(keys, concurrency=CONCURRENCY) as results:
                async for _ in results:
                    pass
        elif variant == "sdk-distinct":

            async def distinct(index: int) -> None:
                await client.account.profile(api_key=keys[index])

            await pool(distinct)
        else:

            async def one(_: int) -> None:
                await client.account.profile()

            await pool(one)


def _telemetry_for(variant: str) -> None:
    """Before the client is made: hide OpenTelemetry, or set up its SDK, as the variant says."""
    if variant == "sdk-no-otel":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]  # import fails
    elif variant == "sdk-otel-sdk":
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        trace.set_tracer_provider(TracerProvider())  # spans recorded, no exporter
        metrics.set_meter_provider(MeterProvider())


def _count(variant: str, url: str, requests: int) -> int:
    """Instructions of one child process running ``requests`` requests under callgrind."""
    out = subprocess.run(
        [
            shutil.which("valgrind") or "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-m",
            "benchmarks.instructions",
            "--child",
            variant,
            url,
            str(requests),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        cwd=Path(__file__).resolve().parent.parent,
    )
    match = _COLLECTED.search(out.stderr)
    if match is None:
        raise RuntimeError(f"callgrind printed no total for {variant}: {out.stderr[-300:]}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1200)
    parser.add_argument(
        "--only",
        help="comma-separated variants to count (a partial run does not overwrite the results file)",
    )
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        settle_allocator()
        variant, url, n = args.child
        _telemetry_for(variant)
        asyncio.run(_drive(variant, url, int(n)))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind); nothing measured")
        return 0
    extra = args.large - args.small
    rows: dict[str, float] = {}
    chosen = list(VARIANTS) if not args.only else args.only.split(",")
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if "raw" not in chosen:
        chosen.insert(0, "raw")  # every ratio is to raw
    plan = cpu_plan(True)
    with ResponderProcess(plan) as responder:
        for variant in chosen:
            small = _count(variant, responder.url, args.small)
            large = _count(variant, responder.url, args.large)
            rows[variant] = (large - small) / extra
    raw = rows["raw"]
    print(f"{'variant':14s} {'instructions/request':>21s} {'x raw':>6s}  what")
    for variant, per_request in rows.items():
        ratio = per_request / raw
        print(f"{variant:14s} {per_request:21,.0f} {ratio:6.3f}  {VARIANTS[variant]}")
    if args.only:
        return 0
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "method": "callgrind, (count at large - count at small) / extra requests",
                "small": args.small,
                "large": args.large,
                "concurrency": CONCURRENCY,
                "instructions_per_request": rows,
                "ratio_to_raw": {k: v / raw for k, v in rows.items()},
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
