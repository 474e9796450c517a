"""A minimal, fast HTTP/1.1 responder for overhead runs: the client must be what is measured.

It answers ``GET /v1/account/profile`` with one fixed profile body for any (or no) Bearer
key, without parsing headers, so it spends as little CPU per request as Python allows.
``GET /__stats`` reports its own CPU time and request count as JSON, and the same numbers
are printed on stdout when it exits (SIGTERM or SIGINT).

Run it on its own: ``python -m benchmarks.responder --port 0``; it prints
``LISTENING http://127.0.0.1:<port>`` on stdout once bound. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Sequence
from typing import Final, cast

from ._machine import settle_allocator

__all__ = ["PROFILE_BODY", "PROFILE_PATH", "main"]

PROFILE_PATH: Final = "/v1/account/profile"

# The wire format of the spec's User, every field present, as the emulator serves it.
PROFILE_BODY: Final = json.dumps(
    {
        "user": {
            "id": "6f1c2b0e-8d7a-4c3e-9b5f-2a4d6e8f0a1c",
            "email": "bench@example.test",
            "name": "Bench User",
            "balance_eur": "9.955000",
            "held_eur": "0.045000",
            "credit_limit_cents": 5000,
            "created_at": "2025-01-02T03:04:05Z",
            "credits_expire_at": "2027-01-01T00:00:00Z",
            "email_verified": True,
            "free_trial_pending_eur": None,
            "pending_credit_notice": True,
            "prompt_analysis_opt_in": False,
            "providers": ["google"],
            "two_factor_enabled": False,
        }
    }
).encode()

_PROFILE_LINE: Final = b"GET " + PROFILE_PATH.encode() + b" "
_STATS_LINE: Final = b"GET /__stats "


def _response(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"\r\n" + body
    )


_PROFILE_RESPONSE: Final = _response(b"200 OK", PROFILE_BODY)
_NOT_FOUND: Final = _response(b"404 Not Found", b'{"error":"not_found","message":"no route"}')


class Stats:
    """Requests served; CPU time comes from the OS when asked."""

    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0

    def snapshot(self) -> dict[str, float | int]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "pid": os.getpid(),
            "requests": self.requests,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "monotonic": time.monotonic(),
            "max_rss_kb": usage.ru_maxrss,
        }


class ResponderProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1; requests are split on the blank line (GETs carry no body)."""

    __slots__ = ("_buffer", "_stats", "_transport")

    def __init__(self, stats: Stats) -> None:
        self._stats = stats
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have write().
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                break
            if buffer.startswith(_PROFILE_LINE, start):
                out.append(_PROFILE_RESPONSE)
            elif buffer.startswith(_STATS_LINE, start):
                out.append(_response(b"200 OK", json.dumps(self._stats.snapshot()).encode()))
            else:
                out.append(_NOT_FOUND)
            start = end + 4
        self._buffer = buffer[start:]
        if out and self._transport is not None:
            self._stats.requests += len(out)
            self._transport.write(b"".join(out) if len(out) > 1 else out[0])


async def serve(host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT, then print the final stats as one JSON line."""
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: ResponderProtocol(stats), host, port, backlog=1024, reuse_address=True
    )
    bound = server.sockets[0].getsockname()
    print(f"LISTENING http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()
    print("STATS " + json.dumps(stats.snapshot()), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.responder", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "localhost"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (Linux only)")
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop if installed")
    args = parser.parse_args(argv)
    settle_allocator()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("uvloop not installed; serving on asyncio", file=sys.stderr)
        else:
            uvloop.run(serve(args.host, args.port))
            return 0
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
