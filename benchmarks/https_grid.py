"""The way production runs: HTTPS, with the network's latency, at high concurrency.

    python -m benchmarks.https_grid [--rounds 3] [--quick] [--latency 20,80] [--concurrency 64,256,1024]

A responder in its own process (pinned to the last CPU, the client to the first) serves
HTTPS with a throwaway CA from ``trustme`` and answers each request after an added
latency (20 ms and 80 ms: a nearby and a distant region), keep-alive, any Bearer key.
At concurrency 64, 256 and 1,024 it runs side by side, in rounds with the order rotated:

- raw aiohttp (``TCPConnector(limit=c)``, ``json.loads``),
- accountapi ``profile(api_key=k)`` with a new key per call (``Limits(max_connections=c)``),
- accountapi ``balances(keys, concurrency=c)`` over distinct keys,
- httpx ``AsyncClient`` (``Limits(max_connections=c)``).

For each it reports keys (requests) per second (median of rounds), the ratio to raw
aiohttp (median of per-round ratios), the client's CPU per request, and the TCP
connections the responder accepted per 1,000 requests: each is one TLS handshake.
Everything stays on 127.0.0.1; every run is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from accountapi import AccountClient, Limits

from ._keys import bench_key
from ._machine import settle_allocator
from ._results import add_record_flag, results_dir
from ._servers import cpu_plan
from .responder import PROFILE_BODY, PROFILE_PATH

VARIANTS: Final = ("raw aiohttp", "sdk profile(api_key=k)", "sdk balances()", "httpx")
_RESULTS: Final = Path(__file__).resolve().parent / "results" / "https_grid.json"
_ROUND_CAP_S: Final = 60.0


# -- the responder (child process) -------------------------------------------------------


def _serve(cert_dir: str, latency: float) -> None:
    """Serve HTTPS on a free loopback port until SIGTERM; print LISTENING, then stats."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - the bench extra installs it
        pass
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(cert_dir, "server.pem"))
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(PROFILE_BODY)).encode()
        + b"\r\n\r\n"
        + PROFILE_BODY
    )
    profile_line = b"GET " + PROFILE_PATH.encode() + b" "
    stats = {"connections": 0, "requests": 0}

    class Handler(asyncio.Protocol):
        def __init__(self) -> None:
            self.buffer = b""
            self.transport: Any = None

        def connection_made(self, transport: Any) -> None:
            stats["connections"] += 1
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            loop = asyncio.get_running_loop()
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                if head.startswith(b"GET /__stats "):
                    usage = os.times()
                    body = json.dumps({**stats, "cpu_s": usage.user + usage.system}).encode()
                    self.transport.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: "
                        + str(len(body)).encode()
                        + b"\r\nConnection: close\r\n\r\n"
                        + body
                    )
                    self.transport.close()
                    return
                if head.startswith(profile_line):
                    stats["requests"] += 1
                    loop.call_later(latency, self.answer)

        def answer(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(response)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Handler, "127.0.0.1", 0, ssl=context, backlog=4096)
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


class _Responder:
    """The HTTPS responder process for one latency."""

    def __init__(self, cert_dir: str, latency: float, cpu: int | None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.https_grid", "--serve", cert_dir, str(latency)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("LISTENING "):
            self.proc.kill()
            raise RuntimeError(f"the HTTPS responder did not start: {line!r}")
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        self.url = f"https://127.0.0.1:{line.split()[1]}"

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()


# -- the client ----------------------------------------------------------------------------


async def _stats(url: str, context: ssl.SSLContext) -> dict[str, float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + "/__stats", ssl=context) as resp,
    ):
        data: dict[str, float] = json.loads(await resp.read())
        return data


async def _pool(requests: int, concurrency: int, call: Callable[[int], Awaitable[None]]) -> None:
    counter = iter(range(requests))
    deadline = time.monotonic() + _ROUND_CAP_S

    async def worker() -> None:
        for index in counter:
            if time.monotonic() > deadline:
                return
            await call(index)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _run(
    variant: str, url: str, context: ssl.SSLContext, requests: int, concurrency: int
) -> None:
    keys = [bench_key("grid", i % 10_000) for i in range(requests)]
    if variant == "raw aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def raw(index: int) -> None:
                headers = {"Authorization": "Bearer " + keys[index]}
                async with session.get(url + PROFILE_PATH, headers=headers) as resp:
                    json.loads(await resp.read())

            await _pool(requests, concurrency, raw)
        return
    if variant == "httpx":
        import httpx

        pool = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(verify=context, limits=pool) as http:

            async def via_httpx(index: int) -> None:
                resp = await http.get(
                    url + PROFILE_PATH, headers={"Authorization": "Bearer " + keys[index]}
                )
                json.loads(resp.content)

            await _pool(requests, concurrency, via_httpx)
        return
    limits = Limits(max_connections=concurrency)
    async with AccountClient(base_url=url, ssl=context, limits=limits) as client:
        if variant == "sdk balances()":
            async with client.balances(keys, concurrency=concurrency) as results:
                async for _ in results:
                    pass
            return

        async def distinct(index: int) -> None:
            await client.account.profile(api_key=keys[index])

        await _pool(requests, concurrency, distinct)


def _measure(
    variant: str, url: str, context: ssl.SSLContext, requests: int, concurrency: int
) -> dict[str, float]:
    async def go() -> dict[str, float]:
        before = await _stats(url, context)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await _run(variant, url, context, requests, concurrency)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        after = await _stats(url, context)
        served = after["requests"] - before["requests"]
        connections = after["connections"] - before["connections"] - 1  # the stats call
        return {
            "rps": served / (wall1 - wall0),
            "cpu_us": (cpu1 - cpu0) / served * 1e6,
            "handshakes_per_1000": connections / served * 1000,
            "served": served,
        }

    return asyncio.run(go())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.https_grid")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round, small counts")
    parser.add_argument("--latency", default="20,80", help="added latency in ms, comma-separated")
    parser.add_argument("--concurrency", default="64,256,1024")
    add_record_flag(parser)
    parser.add_argument("--serve", nargs=2, metavar=("CERT_DIR", "LATENCY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve[0], float(args.serve[1]))
        return 0
    import trustme

    settle_allocator()
    plan = cpu_plan(True)
    plan.pin_client()
    rounds = 1 if args.quick else args.rounds
    latencies = [int(x) for x in args.latency.split(",")]
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as cert_dir:
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            os.path.join(cert_dir, "server.pem")
        )
        for latency_ms in latencies:
            responder = _Responder(cert_dir, latency_ms / 1000, plan.server)
            try:
                for concurrency in concurrencies:
                    # Enough requests for 8 full waves at this concurrency, at least 2,000.
                    requests = max(2_000, concurrency * 8) // (4 if args.quick else 1)
                    per_round: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
                    for r in range(rounds):
                        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
                        for variant in order:
                            # httpx's pool is two orders of magnitude slower under
                            # concurrency: fewer requests keep its runs within minutes.
                            n = min(requests, 1_000) if variant == "httpx" else requests
                            per_round[variant].append(
                                _measure(variant, responder.url, context, n, concurrency)
                            )
                    for variant in VARIANTS:
                        runs = per_round[variant]
                        ratios = [
                            run["rps"] / raw["rps"]
                            for run, raw in zip(runs, per_round["raw aiohttp"], strict=True)
                        ]
                        rows.append(
                            {
                                "latency_ms": latency_ms,
                                "concurrency": concurrency,
                                "variant": variant,
                                "requests": requests,
                                "rps": statistics.median(x["rps"] for x in runs),
                                "x_raw": statistics.median(ratios),
                                "cpu_us": statistics.median(x["cpu_us"] for x in runs),
                                "handshakes_per_1000": statistics.median(
                                    x["handshakes_per_1000"] for x in runs
                                ),
                            }
                        )
                        row = rows[-1]
                        print(
                            f"{latency_ms:3d} ms  c={concurrency:5d}  {variant:24s} "
                            f"{row['rps']:8,.0f} req/s  {row['x_raw']:5.2f}x raw  "
                            f"{row['cpu_us']:6.0f} µs CPU/req  "
                            f"{row['handshakes_per_1000']:6.1f} handshakes/1000",
                            flush=True,
                        )
            finally:
                responder.close()
    if not args.quick:
        results = results_dir(args.record) / _RESULTS.name
        results.write_text(json.dumps({"rounds": rounds, "rows": rows}, indent=2) + "\n")
        print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
