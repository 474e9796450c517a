"""Many keys: N distinct keys through the SDK against the emulator, peak RSS of the client.

The emulator (its own process) has every key registered; each count runs in a fresh
client process (``manykeys_child``) so that the peak RSS belongs to that run alone.
``balances()`` is the target; ``profile(api_key=...)`` on a pool of workers runs too,
as a reference for the per-key path underneath it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._servers import CpuPlan, EmulatorProcess

__all__ = ["ManyKeysRow", "run_many_keys"]

_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ManyKeysRow:
    mode: str
    keys: int
    done: int
    errors: int
    wall_s: float
    rps: float
    rss_start_mb: float
    peak_rss_mb: float
    client_cpu: float  # client CPU seconds / wall seconds
    server_cpu: float  # emulator CPU seconds / wall seconds


def _child(url: str, count: int, mode: str, plan: CpuPlan, time_limit: float) -> dict[str, float]:
    args = [
        sys.executable,
        "-m",
        "benchmarks.manykeys_child",
        f"--url={url}",
        f"--count={count}",
        f"--mode={mode}",
        f"--time-limit={time_limit}",
    ]
    if plan.client is not None:
        args.append(f"--cpu={plan.client}")
    done = subprocess.run(
        args, cwd=_ROOT, capture_output=True, text=True, timeout=time_limit + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"manykeys_child failed ({done.returncode}): {done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_many_keys(
    emulator: EmulatorProcess,
    plan: CpuPlan,
    *,
    counts: Sequence[int],
    modes: Sequence[str],
    time_limit: float,
    progress: bool = True,
) -> list[ManyKeysRow]:
    emulator.call("add_keys", prefix="many", start=0, count=max(counts))
    rows = []
    for mode in modes:
        for count in counts:
            emulator.call("reset")
            before = emulator.stats()
            out = _child(emulator.url, count, mode, plan, time_limit)
            after = emulator.stats()
            wall = float(out["elapsed_s"])
            row = ManyKeysRow(
                mode=mode,
                keys=count,
                done=int(out["done"]),
                errors=int(out["errors"]),
                wall_s=wall,
                rps=out["done"] / wall if wall > 0 else 0.0,
                rss_start_mb=out["rss_start_kb"] / 1024,
                peak_rss_mb=out["peak_rss_kb"] / 1024,
                client_cpu=out["cpu_s"] / wall if wall > 0 else 0.0,
                server_cpu=(after.cpu_s - before.cpu_s) / wall if wall > 0 else 0.0,
            )
            rows.append(row)
            if progress:
                print(
                    f"  {mode:<8} {count:>7,} keys {row.rps:>7,.0f} req/s "
                    f"peak RSS {row.peak_rss_mb:.1f} MB "
                    f"(client CPU {row.client_cpu:.0%}, emulator CPU {row.server_cpu:.0%})",
                    flush=True,
                )
    return rows
