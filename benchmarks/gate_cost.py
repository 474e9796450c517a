"""What the Redis key gate costs per call, next to the in-process gate.

Starts its own ``redis-server`` (loopback, free port, no persistence) and the minimal
``benchmarks.responder``, then measures for :class:`~accountapi.gates.MemoryKeyGate` and
:class:`~accountapi.gates.RedisKeyGate`:

- the gate alone: acquire + release pairs one after another (µs per pair, and Redis
  round trips per pair, read from ``INFO commandstats``);
- whole calls: ``AccountClient`` profile calls on one key against the responder, at a
  concurrency within the per-key limit (10: the gate never makes anyone wait) and above
  it (50: callers queue), as requests per second and Redis round trips per call.

Run ``python -m benchmarks.gate_cost`` (a few seconds) or ``--quick`` (for CI). Every run
is bounded by a timeout; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from accountapi import AccountClient
from accountapi.gates import KeyGate, MemoryKeyGate, RedisKeyGate

from ._machine import settle_allocator

KEY = "dpct_" + "B" * 28 + "ench"
RUN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Row:
    gate: str
    what: str
    concurrency: int
    calls: int
    seconds: float
    round_trips: float | None  # Redis commands from the client per call (None: no Redis)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server on a free loopback port, answering PING."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed: apt-get install -y redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise SystemExit("redis-server did not answer within 5s")


def start_responder() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.responder", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        proc.kill()
        proc.wait()
        raise SystemExit(f"responder did not start: {line!r}")
    return proc, line.removeprefix("LISTENING ")


# Commands the gate's scripts run inside Redis; commandstats counts those too.
_IN_SCRIPT = frozenset(
    {"time", "zremrangebyscore", "zrangebyscore", "zrem", "zrank", "zadd", "zcard", "zscore"}
    | {"zcount", "pttl", "pexpire", "incr", "set", "exists", "publish"}
)


async def _client_commands(stats: aioredis.Redis) -> int:
    info = await stats.info("commandstats")
    return sum(
        int(v["calls"])
        for name, v in info.items()
        if name.removeprefix("cmdstat_") not in _IN_SCRIPT | {"info", "config|resetstat"}
    )


async def gate_alone(name: str, gate: KeyGate, pairs: int, stats: aioredis.Redis | None) -> Row:
    for _ in range(5):  # connections open, scripts loaded
        await gate.acquire(KEY, None)
        gate.release(KEY)
    if isinstance(gate, RedisKeyGate):
        await gate.in_flight(KEY)
    before = await _client_commands(stats) if stats is not None else 0
    start = time.perf_counter()
    for _ in range(pairs):
        await gate.acquire(KEY, None)
        gate.release(KEY)
    if isinstance(gate, RedisKeyGate):
        await gate.in_flight(KEY)  # the last release has landed (one more command)
    seconds = time.perf_counter() - start
    trips = None
    if stats is not None:
        trips = (await _client_commands(stats) - before - 1) / pairs
    return Row(name, "acquire+release", 1, pairs, seconds, trips)


async def calls(
    name: str,
    gate: KeyGate,
    url: str,
    concurrency: int,
    total: int,
    stats: aioredis.Redis | None,
) -> Row:
    async with AccountClient(KEY, base_url=url, key_gate=gate, max_retries=0) as client:
        await asyncio.gather(*(client.account.profile() for _ in range(concurrency)))  # warm
        if isinstance(gate, RedisKeyGate):
            await gate.in_flight(KEY)
        before = await _client_commands(stats) if stats is not None else 0
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                await client.account.profile()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if isinstance(gate, RedisKeyGate):
            await gate.in_flight(KEY)
        seconds = time.perf_counter() - start
    trips = None
    if stats is not None:
        trips = (await _client_commands(stats) - before - 1) / total
    return Row(name, "profile call", concurrency, total, seconds, trips)


async def run(redis_url: str, responder_url: str, pairs: int, total: int) -> list[Row]:
    rows: list[Row] = []
    stats = aioredis.Redis.from_url(redis_url)
    try:
        makers: Sequence[tuple[str, Callable[[], KeyGate], aioredis.Redis | None]] = (
            ("memory", MemoryKeyGate, None),
            ("redis", lambda: RedisKeyGate(redis_url), stats),
        )
        for name, make, gate_stats in makers:
            gate = make()
            try:
                async with asyncio.timeout(RUN_TIMEOUT):
                    rows.append(await gate_alone(name, gate, pairs, gate_stats))
                    for concurrency in (10, 50):
                        rows.append(
                            await calls(name, gate, responder_url, concurrency, total, gate_stats)
                        )
            finally:
                if isinstance(gate, RedisKeyGate):
                    await gate.aclose()
    finally:
        await stats.aclose()
    return rows


def report(rows: Sequence[Row]) -> str:
    lines = [
        f"{'gate':<7} {'measured':<16} {'conc':>4} {'n':>6} {'per second':>11} "
        f"{'µs each':>8} {'Redis round trips each':>23}",
    ]
    for r in rows:
        trips = "-" if r.round_trips is None else f"{r.round_trips:.2f}"
        lines.append(
            f"{r.gate:<7} {r.what:<16} {r.concurrency:>4} {r.calls:>6} {r.rate:>11.0f} "
            f"{1e6 / r.rate if r.rate else 0:>8.0f} {trips:>23}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer calls, for CI (seconds)")
    args = parser.parse_args(argv)
    settle_allocator()
    pairs, total = (300, 500) if args.quick else (3000, 5000)
    redis_proc, redis_url = start_redis()
    try:
        responder, responder_url = start_responder()
        try:
            rows = asyncio.run(run(redis_url, responder_url, pairs, total))
        finally:
            responder.terminate()
            responder.communicate(timeout=5)
    finally:
        redis_proc.kill()
        redis_proc.wait()
    print(report(rows))


if __name__ == "__main__":
    main()
