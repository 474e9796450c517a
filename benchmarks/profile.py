"""Profile one throughput variant with pyinstrument: where does the client's CPU go?

``python -m benchmarks.profile sdk --concurrency 64 --requests 20000`` starts the
responder, runs the variant once on a fresh loop under pyinstrument, and prints the call
tree (``--html PATH`` writes the interactive report instead). Variant names are those of
the throughput table: raw, raw_keys, sdk, sdk_no_retry, sdk_ungated, sdk_keys, balances, httpx.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from ._load import run_on_loop
from ._machine import settle_allocator
from ._servers import ResponderProcess, cpu_plan
from ._variants import throughput_variants

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    variants = {v.name: v for v in throughput_variants(with_uvloop=False, with_httpx=True)}
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("variant", choices=sorted(variants))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--interval", type=float, default=0.0005, help="sampling interval, s")
    parser.add_argument("--html", type=Path, help="write pyinstrument's HTML report here")
    args = parser.parse_args(argv)
    settle_allocator()
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pip install pyinstrument to profile", file=sys.stderr)
        return 2
    variant = variants[args.variant]
    plan = cpu_plan(True)
    plan.pin_client()
    with ResponderProcess(plan) as responder:
        run = partial(variant.run, responder.url, 1_000, args.concurrency, 30.0)
        run_on_loop(variant.loop, run)  # warm-up, not profiled
        profiler = Profiler(interval=args.interval, async_mode="disabled")
        run = partial(variant.run, responder.url, args.requests, args.concurrency, 120.0)
        with profiler:
            load = run_on_loop(variant.loop, run)
    print(f"{variant.label}: {load.done:,} requests, {load.rps:,.0f} req/s under the profiler")
    if args.html is not None:
        args.html.write_text(profiler.output_html())
        print(f"HTML report: {args.html}")
    else:
        print(profiler.output_text(unicode=True, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
