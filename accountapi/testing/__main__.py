"""`python -m accountapi.testing`: run the emulator as a process, for manual use and benchmarks.

It prints the generated keys (one per line) on stdout or into `--keys-file`, announces
its URL on stderr, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
from collections.abc import Sequence

from ._emulator import Emulator


def _port(text: str) -> int:
    """A TCP port number, 0 meaning any free port."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535, not {value}")
    return value


def _count(text: str) -> int:
    """A non-negative whole number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _seconds(text: str) -> float:
    """A non-negative, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m accountapi.testing",
        description="Serve the account API emulator until interrupted.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only)")
    parser.add_argument("--port", type=_port, default=8080, help="port to bind; 0 picks one")
    parser.add_argument("--keys", type=_count, default=1, help="how many keys to create")
    parser.add_argument("--keys-file", metavar="PATH", help="write keys here, not to stdout")
    parser.add_argument("--latency", type=_seconds, default=0.0, help="service time, seconds")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host; the emulator has no real security",
    )
    return parser


def _write_keys_file(path: str, keys: Sequence[str]) -> None:
    """Write keys readable by the owner only, since they authenticate to the emulator."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        if hasattr(os, "fchmod"):
            os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        f.writelines(f"{key}\n" for key in keys)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no loop signal handlers
            loop.add_signal_handler(signum, stop.set)
    async with Emulator(host=args.host, port=args.port, latency=args.latency) as emu:
        keys = [emu.add_key() for _ in range(args.keys)]
        if args.keys_file is not None:
            _write_keys_file(args.keys_file, keys)
        else:
            sys.stdout.writelines(f"{key}\n" for key in keys)
            sys.stdout.flush()
        print(f"accountapi emulator listening on {emu.url}", file=sys.stderr, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT/SIGTERM, and return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_remote:
        parser.error(f"refusing to listen on non-loopback host {args.host!r}; add --allow-remote")
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:  # Ctrl-C where the loop could not install its handler
        pass
    except OSError as exc:
        print(f"python -m accountapi.testing: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
