"""The emulator in its own process, driven by JSON lines on stdin (one answer line each).

``benchmarks._servers.EmulatorProcess`` starts it. The first stdout line is
``{"url": ...}``. Commands: ``add_keys`` (a deterministic family, see ``_keys``, with an
optional service ``latency``), ``rate_limited`` / ``rate_limited_date`` (script one 429
for a key), ``fault_mix`` (every request answered with ``status`` at probability ``p``;
``p=0`` serves normally), ``arrivals`` (when each request of a key reached the server,
wall clock), ``requests`` (finished since the last reset), ``reset``, ``stats`` and ``quit``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import math
import os
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from accountapi.testing import Emulator, Fault

from ._keys import bench_key
from ._machine import settle_allocator

__all__ = ["main"]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Host:
    """Answers one command at a time against a running emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.requests = 0

    def _ensure(self, key: str) -> None:
        try:
            self.emulator.profile(key)
        except KeyError:
            self.emulator.add_key(key=key)

    def handle(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        emu = self.emulator
        if op == "add_keys":
            prefix, start, count = str(params["prefix"]), int(params["start"]), int(params["count"])
            latency = params.get("latency")
            for i in range(start, start + count):
                emu.add_key(
                    key=bench_key(prefix, i), latency=None if latency is None else float(latency)
                )
            # The registry is long-lived: keep the collector from rescanning it mid-run.
            gc.collect()
            gc.freeze()
            return {"added": count}
        if op == "rate_limited":
            key = str(params["key"])
            self._ensure(key)
            emu.script(key, [Fault.rate_limited(float(params["retry_after"]))])
            return {"ok": True}
        if op == "rate_limited_date":
            key = str(params["key"])
            self._ensure(key)
            # HTTP-dates have whole seconds: aim at a whole second at least `lead` ahead.
            target = math.floor(time.time()) + float(params["lead"])
            when = dt.datetime.fromtimestamp(target, dt.UTC)
            emu.script(key, [Fault.rate_limited(when)])
            return {"target_wall": target}
        if op == "arrivals":
            tail = str(params["key"])[-4:]
            offset = time.time() - time.monotonic()
            seen = [
                (r.t_start + offset, r.status)
                for r in emu.records
                if r.key_hint is not None and r.key_hint.endswith(tail)
            ]
            return {"wall": [w for w, _ in seen], "status": [s for _, s in seen]}
        if op == "fault_mix":
            p, status = float(params["p"]), int(params["status"])
            emu.set_fault_mix([(p, Fault.status(status))] if p else [], seed=params.get("seed"))
            return {"ok": True}
        if op == "requests":
            return {"requests": len(emu.records)}
        if op == "reset":
            self.requests += len(emu.records)
            emu.reset_stats()
            return {"ok": True}
        if op == "stats":
            return {"cpu_s": _cpu_s(), "requests": self.requests + len(emu.records)}
        raise ValueError(f"unknown op {op!r}")


async def serve() -> None:
    async with Emulator(host="127.0.0.1", port=0) as emu:
        host = Host(emu)
        print(json.dumps({"url": emu.url, "pid": os.getpid()}), flush=True)
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            op = command.pop("op")
            if op == "quit":
                return
            try:
                answer = host.handle(op, command)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.emulator_host")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (Linux only)")
    args = parser.parse_args(argv)
    settle_allocator()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
