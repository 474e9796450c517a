"""`python -m accountapi.testing`: run the emulator as a process, for manual use and benchmarks.

The argument parser of `accountapi.testing._serve`, which `accountapi emulator`
also runs (with click, when the `cli` extra is installed): the same options, defaults and
behaviour. It writes the keys into `--keys-file` (or stdout with `-`), announces its URL
on stderr, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Sequence

from ._serve import DEFAULTS, ServeError, ServeOptions, serve


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
    d = DEFAULTS
    parser = argparse.ArgumentParser(
        prog="python -m accountapi.testing",
        description="Serve the account API emulator until interrupted "
        "(the same as `accountapi emulator`).",
    )
    parser.add_argument("--host", default=d.host, help="address to bind (loopback only)")
    parser.add_argument(
        "--port", type=_port, default=d.port, help=f"port to bind; 0 picks one (default {d.port})"
    )
    parser.add_argument(
        "--keys", type=_count, default=d.keys, help=f"how many keys to create (default {d.keys})"
    )
    parser.add_argument(
        "--keys-file",
        metavar="PATH",
        default=d.keys_file,
        help=f"where to write the keys, mode 0600; - for stdout (default {d.keys_file})",
    )
    parser.add_argument("--latency", type=_seconds, default=d.latency, help="service time, seconds")
    parser.add_argument(
        "--mix",
        action="store_true",
        help="plant the demo's mix of failing keys: unknown (401), out of credit (402), "
        "transient 429/502/503 first, zero balances",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the planted mix")
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host; the emulator has no real security",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT/SIGTERM, and return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not _is_loopback(args.host) and not args.allow_remote:
        parser.error(f"refusing to listen on non-loopback host {args.host!r}; add --allow-remote")
    options = ServeOptions(
        host=args.host,
        port=args.port,
        keys=args.keys,
        keys_file=args.keys_file,
        latency=args.latency,
        mix=args.mix,
        seed=args.seed,
    )
    try:
        asyncio.run(serve(options, prog="python -m accountapi.testing"))
    except KeyboardInterrupt:  # Ctrl-C where the loop could not install its handler
        pass
    except ServeError as exc:
        print(f"python -m accountapi.testing: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
