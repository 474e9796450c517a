"""The emulator as a process: what `accountapi emulator` and `python -m accountapi.testing`
both run, with one set of defaults (`ServeOptions`, in ``_serve_options``).

It starts the emulator, registers the keys (optionally the demo's mix of failing keys,
so an operator can rehearse a run), writes them to a file readable by the owner only
(or to stdout), announces its URL on stderr, and serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from collections import Counter
from typing import Final, TextIO

from ._emulator import Emulator
from ._faults import Fault
from ._serve_options import DEFAULTS, ServeOptions

__all__ = [
    "DEFAULTS",
    "PLANTED",
    "ServeError",
    "ServeOptions",
    "plant_mix",
    "serve",
    "write_keys",
]

# What plant_mix plants, by the outcome a client must see for the key.
PLANTED: Final = {
    "ok": "profile",
    "AuthenticationError": "unknown key (401)",
    "PaymentRequiredError": "out of credit (402)",
}

_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"


class ServeError(Exception):
    """A reason the emulator could not start, as one line for the operator."""


def plant_mix(emu: Emulator, n: int, rng: random.Random) -> dict[str, str]:
    """Register ``n`` keys as the demo does; map each key to the outcome a client must see.

    About 10% are never registered (401), 7% are out of credit on every request (402),
    15% answer one or two transient failures (429, 502, 503) before their profile, 10%
    have a zero balance, and the rest have random balances and holds.
    """
    transient = [
        [Fault.rate_limited(0.2)],
        [Fault.status(502)],
        [Fault.html(503)],
        [Fault.empty(503), Fault.html(502)],
    ]
    planted: dict[str, str] = {}
    for i in range(n):
        roll = rng.random()
        if roll < 0.10:  # never registered: 401
            planted["dpct_" + "".join(rng.choices(_ALPHABET, k=32))] = "AuthenticationError"
        elif roll < 0.17:  # out of credit, on every request
            planted[emu.add_key(fault=Fault.status(402))] = "PaymentRequiredError"
        elif roll < 0.32:  # one or two transient failures, then the profile
            key = emu.add_key(
                {"balance_eur": f"{rng.randint(1, 500)}.{rng.randint(0, 999):03d}000"}
            )
            emu.script(key, transient[i % len(transient)])
            planted[key] = "ok"
        elif roll < 0.42:
            planted[emu.add_key({"balance_eur": "0.000000"})] = "ok"
        else:
            balance = f"{rng.randint(0, 2000)}.{rng.randint(0, 999_999):06d}"
            held = f"{rng.randint(0, 3)}.{rng.randint(0, 99):02d}0000"
            planted[emu.add_key({"balance_eur": balance, "held_eur": held})] = "ok"
    return planted


def write_keys(path: str, keys: list[str], stdout: TextIO | None = None) -> None:
    """Write keys one per line, readable by the owner only (``-``: to stdout)."""
    if path == "-":
        out = stdout or sys.stdout
        out.writelines(f"{key}\n" for key in keys)
        out.flush()
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise ServeError(f"cannot write keys file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        if hasattr(os, "fchmod"):
            os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        f.writelines(f"{key}\n" for key in keys)


async def serve(options: ServeOptions, *, prog: str = "accountapi emulator") -> None:
    """Serve until SIGINT or SIGTERM; `ServeError` when it cannot start."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
            loop.add_signal_handler(signum, stop.set)
    emu = Emulator(host=options.host, port=options.port, latency=options.latency)
    try:
        await emu.start()
    except OSError as exc:
        raise ServeError(f"cannot start the emulator: {exc.strerror or exc}") from None
    try:
        if options.mix:
            planted = plant_mix(emu, options.keys, random.Random(options.seed))  # noqa: S311
            keys = list(planted)
        else:
            planted = {}
            keys = [emu.add_key() for _ in range(options.keys)]
        write_keys(options.keys_file, keys)
        where = "stdout" if options.keys_file == "-" else options.keys_file
        lines = [
            f"accountapi emulator listening on {emu.url}",
            f"  {len(keys)} keys in {where}",
        ]
        if planted:
            counts = Counter(planted.values())
            mix = ", ".join(f"{counts[kind]} {what}" for kind, what in PLANTED.items())
            lines.append(f"  planted (seed {options.seed}): {mix}; some answer 429/502/503 first")
        if options.keys_file != "-":
            lines.append(f"  try: ACCOUNTAPI_BASE_URL={emu.url} accountapi balances {where}")
        lines.append("  Ctrl-C stops it")
        print("\n".join(lines), file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await emu.close()
    print(f"{prog} stopped", file=sys.stderr, flush=True)
