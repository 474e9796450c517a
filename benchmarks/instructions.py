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
from typing import Any, Final

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from accountapi import AccountClient, Limits
from accountapi._bulk import DEFAULT_DEDUPE_WINDOW
from accountapi._config import NOT_GIVEN

from ._keys import bench_key
from ._machine import settle_allocator
from ._results import add_record_flag, results_dir
from ._servers import ResponderProcess, cpu_plan

RESULTS: Final = Path(__file__).resolve().parent / "results" / "instructions.json"
CONCURRENCY: Final = 64
VARIANTS: Final = {
    "raw": "raw aiohttp + json.loads, one key",
    "sdk": "accountapi profile(), one key (10 in flight, the rest queued in the gate)",
    "sdk-distinct": "accountapi profile(api_key=k), a new key per request (no queueing)",
    "sdk-nogate": "accountapi profile(), one key, Limits(per_key=None)",
    "balances": "accountapi balances(), a new key per request",
    "balances-nowindow": "as balances, with dedupe_window=0 (no window of recent answers)",
    "sdk-no-otel": "as sdk, with opentelemetry not importable (the package absent)",
    "sdk-otel-sdk": "as sdk, with opentelemetry-sdk's TracerProvider and MeterProvider set",
    # The breakdown: aiohttp called the way the SDK calls it, and sdk-distinct with one
    # part of the SDK taken out at a time (measurement only; see _ablate()).
    "floor": "raw aiohttp called as the SDK calls it: prebuilt headers, no per-request timer",
    "sdk-distinct-json": "sdk-distinct, json.loads instead of the strict decode into Profile",
    "sdk-distinct-nodeadline": "sdk-distinct without attempt deadlines (timeout=None)",
    "sdk-distinct-noguard": "sdk-distinct on aiohttp's plain TCPConnector (no pool guard)",
    "sdk-distinct-direct": "sdk-distinct calling the transport directly (no call path or gate)",
}
DISTINCT: Final = frozenset(
    {
        "sdk-distinct",
        "balances",
        "balances-nowindow",
        "sdk-distinct-json",
        "sdk-distinct-nodeadline",
        "sdk-distinct-noguard",
        "sdk-distinct-direct",
    }
)
BREAKDOWN: Final = (
    "floor",
    "sdk-distinct-json",
    "sdk-distinct-nodeadline",
    "sdk-distinct-noguard",
    "sdk-distinct-direct",
)
# The default run's other variants: all but the breakdown's.
MAIN: Final = tuple(name for name in VARIANTS if name not in BREAKDOWN)
# Each part's cost: sdk-distinct minus the variant without it.
PARTS: Final = (
    ("strict decode into Profile, over json.loads", "sdk-distinct-json"),
    ("attempt deadlines (one timer for all attempts)", "sdk-distinct-nodeadline"),
    ("pool guard (connections that spoke out of turn)", "sdk-distinct-noguard"),
    ("call path, key gate, key check, telemetry check", "sdk-distinct-direct"),
)
_COLLECTED: Final = re.compile(r"Collected : (\d+)")


async def _drive(variant: str, url: str, requests: int) -> None:
    """The load for one variant: ``requests`` calls, CONCURRENCY at a time."""
    key = bench_key("instr", 0)
    counter = iter(range(requests))
    # Input data, made by every variant alike (only the distinct-key ones use it), so that
    # making it cancels out of every difference between variants.
    keys = [bench_key("instr", i) for i in range(requests)]

    async def pool(call: object) -> None:
        async def worker() -> None:
            for index in counter:
                await call(index)  # type: ignore[operator]

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    if variant == "floor":
        # What the SDK's transport asks of aiohttp, without the SDK: headers built once
        # per key as a CIMultiDict, no per-request total timer, no redirects.
        no_timer = aiohttp.ClientTimeout(total=None, sock_connect=5.0)
        async with aiohttp.ClientSession(timeout=no_timer) as session:
            target = URL(url + "/v1/account/profile")

            async def lean(_: int) -> None:
                headers = CIMultiDict({"Authorization": "Bearer " + key})
                async with session.get(target, headers=headers, allow_redirects=False) as resp:
                    json.loads(await resp.read())

            await pool(lean)
        return
    if variant == "raw":
        async with aiohttp.ClientSession() as session:

            async def raw(_: int) -> None:
                headers = {"Authorization": "Bearer " + key}
                async with session.get(url + "/v1/account/profile", headers=headers) as resp:
                    json.loads(await resp.read())

            await pool(raw)
        return
    limits = Limits(per_key=None) if variant == "sdk-nogate" else Limits()
    timeout = None if variant == "sdk-distinct-nodeadline" else NOT_GIVEN
    # sdk-no-otel and sdk-otel-sdk drive the same load as sdk.
    async with AccountClient(key, base_url=url, limits=limits, timeout=timeout) as client:
        if variant in ("balances", "balances-nowindow"):
            window = 0 if variant == "balances-nowindow" else DEFAULT_DEDUPE_WINDOW
            async with client.balances(
                keys, concurrency=CONCURRENCY, dedupe_window=window
            ) as results:
                async for _ in results:
                    pass
        elif variant in DISTINCT:

            async def distinct(index: int) -> None:
                await client.account.profile(api_key=keys[index])

            await pool(distinct)
        else:

            async def one(_: int) -> None:
                await client.account.profile()

            await pool(one)


def _ablate(variant: str) -> None:
    """Take one part out of the SDK for a breakdown variant (measurement only).

    Each replacement keeps the request on the wire the same; what it removes is the
    part's own work, so sdk-distinct minus the variant is what that part costs.
    """
    if variant == "sdk-distinct-json":
        import accountapi._account as account

        def json_only(body: bytes, *, status: int = 200) -> object:
            return json.loads(body)

        setattr(account, "decode_profile", json_only)  # noqa: B010
    elif variant == "sdk-distinct-noguard":
        import accountapi._http._transport as transport

        setattr(transport, "GuardedConnector", aiohttp.TCPConnector)  # noqa: B010
    elif variant == "sdk-distinct-direct":
        from accountapi._account import AccountResource, parse_profile
        from accountapi._http._transport import request_headers
        from accountapi._keys import Credential

        async def profile(self: Any, *, api_key: str, timeout: object = None) -> object:
            credential = Credential(api_key).check()
            credential.headers = request_headers(credential.value)  # as the call path does
            transport = self._calls._transport
            raw = await transport.request(
                transport.session(),
                "GET",
                self._profile_url,
                credential,
                self._calls._timeout,
                None,
            )
            return parse_profile(raw)

        setattr(AccountResource, "profile", profile)  # noqa: B010


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
    add_record_flag(parser)
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        settle_allocator()
        variant, url, n = args.child
        _telemetry_for(variant)
        _ablate(variant)
        asyncio.run(_drive(variant, url, int(n)))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind); nothing measured")
        return 0
    extra = args.large - args.small
    rows: dict[str, float] = {}
    chosen = [*MAIN, *BREAKDOWN] if not args.only else args.only.split(",")
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
            print(f"  {variant}: {rows[variant]:,.0f}", file=sys.stderr, flush=True)
    raw = rows["raw"]
    print(f"{'variant':24s} {'instructions/request':>21s} {'x raw':>6s}  what")
    for variant, per_request in rows.items():
        ratio = per_request / raw
        print(f"{variant:24s} {per_request:21,.0f} {ratio:6.3f}  {VARIANTS[variant]}")
    verdicts = instruction_targets(rows)
    if verdicts:
        print()
        for line in verdicts:
            print(line)
    parts = breakdown(rows)
    if parts:
        print()
        print("Where profile(api_key=k) goes beyond raw aiohttp (instructions per request):")
        for name, value in parts.items():
            print(f"  {value:+10,.0f}  {name}")
    if args.only:
        return 0
    results = results_dir(args.record) / RESULTS.name
    results.write_text(
        json.dumps(
            {
                "method": "callgrind, (count at large - count at small) / extra requests",
                "small": args.small,
                "large": args.large,
                "concurrency": CONCURRENCY,
                "instructions_per_request": rows,
                "ratio_to_raw": {k: v / raw for k, v in rows.items()},
                "breakdown": parts,
                "targets": verdicts,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {results}")
    return 0


def instruction_targets(rows: dict[str, float]) -> list[str]:
    """Issue 13's instruction targets, PASS or MISS, for the variants that ran."""
    found = []
    for mine, theirs, limit, what in (
        ("sdk-distinct", "sdk", 0.03, "profile(api_key=k) vs profile() on one key"),
        ("balances", "sdk-distinct", 0.05, "balances() per key vs profile(api_key=k)"),
    ):
        if mine in rows and theirs in rows:
            over = rows[mine] / rows[theirs] - 1
            verdict = "PASS" if over <= limit else "MISS"
            found.append(f"{verdict}: {what}: {over:+.1%} (target ≤ +{limit:.0%})")
    return found


def breakdown(rows: dict[str, float]) -> dict[str, float]:
    """sdk-distinct minus raw aiohttp, part by part; empty unless every variant ran.

    The parts are measured by taking each out on its own; what they do not explain
    (the transport edge, the response object, per-key headers) is the remainder.
    """
    needed = {"raw", "floor", "sdk-distinct", *(variant for _, variant in PARTS)}
    if not needed <= rows.keys():
        return {}
    sdk = rows["sdk-distinct"]
    parts = {"raw aiohttp's per-request timer and header conversion": rows["floor"] - rows["raw"]}
    for name, variant in PARTS:
        parts[name] = sdk - rows[variant]
    explained = sum(parts.values())
    parts["the rest (transport edge, response object, per-key headers)"] = (
        sdk - rows["raw"] - explained
    )
    parts["total: profile(api_key=k) minus raw aiohttp"] = sdk - rows["raw"]
    if "balances" in rows:
        parts["balances() engine per key, over profile(api_key=k)"] = rows["balances"] - sdk
    return parts


if __name__ == "__main__":
    raise SystemExit(main())
