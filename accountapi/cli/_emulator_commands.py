"""``accountapi emulator`` and ``accountapi demo``: the emulator of `accountapi.testing`,
as a process and as a rehearsal of ``balances``.

The options' defaults come from ``accountapi.testing._serve_options``; the emulator (and
aiohttp with it) is imported only when a command runs, never for ``--help``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final

import click

from accountapi.testing._serve_options import DEFAULTS, ServeOptions

from ._balances_command import _balances
from ._keyfile import _KeySource
from ._options import _concurrency_option, _format_option, _progress_option
from ._process import EXIT_FAILED, EXIT_OK, _fail, _run_async, _stderr

if TYPE_CHECKING:
    from accountapi._balance_results import BalanceResult
    from accountapi.testing import Emulator

# -- emulator ------------------------------------------------------------------------------


_SERVE: Final = DEFAULTS


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=_SERVE.port,
    show_default=True,
    help="Loopback port to listen on; 0 picks a free one.",
)
@click.option(
    "--keys",
    "n_keys",
    type=click.IntRange(min=0),
    default=_SERVE.keys,
    show_default=True,
    help="How many keys to create.",
)
@click.option(
    "--keys-file",
    default=_SERVE.keys_file,
    show_default=True,
    metavar="PATH",
    help="Where to write the keys, one per line (mode 0600); - for stdout.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=_SERVE.latency,
    show_default=True,
    metavar="SECONDS",
    help="Service time of every request.",
)
@click.option(
    "--mix",
    is_flag=True,
    help="Plant the demo's mix of failing keys (unknown 401, out of credit 402, "
    "transient 429/502/503 first, zero balances) to rehearse a run.",
)
@click.option(
    "--seed", type=int, default=_SERVE.seed, show_default=True, help="Seed of the planted mix."
)
def emulator(port: int, n_keys: int, keys_file: str, latency: float, mix: bool, seed: int) -> int:
    """Run the account API emulator on 127.0.0.1 until Ctrl-C, for trying the CLI and SDK.

    The same as `python -m accountapi.testing` (one implementation, one set of defaults).
    """
    from accountapi.testing._serve import ServeError

    options = ServeOptions(
        port=port, keys=n_keys, keys_file=keys_file, latency=latency, mix=mix, seed=seed
    )
    try:
        _run_async(serve_emulator(options))
    except ServeError as exc:
        _fail(str(exc))
    return EXIT_OK


async def serve_emulator(options: ServeOptions) -> None:
    """`accountapi.testing._serve.serve`, imported (with the emulator) only when it runs."""
    from accountapi.testing._serve import serve

    await serve(options)


# -- demo ----------------------------------------------------------------------------------


@click.command(
    epilog="""\b
Exit status:
  0  every result matched what was planted in the emulator
  1  some result did not
  2  could not run
"""
)
@click.option(
    "--keys",
    "n_keys",
    type=click.IntRange(min=10, max=100_000),
    default=300,
    show_default=True,
    help="How many keys to plant in the emulator.",
)
@_format_option
@_concurrency_option
@_progress_option
@click.option("--seed", type=int, default=2026, show_default=True, help="Seed of the planted mix.")
def demo(n_keys: int, fmt: str, concurrency: int, progress: bool | None, seed: int) -> int:
    """Run `balances` against an in-process emulator with planted failures; no account needed.

    The emulator gets keys with money, empty keys, unknown keys (401), keys out of credit
    (402) and keys whose first answers are 429/502/503. The demo prints every result,
    then checks each one against what was planted: exit status 0 when all match.
    """
    return _run_async(_demo(n_keys, fmt, concurrency, progress, seed))


async def _demo(n_keys: int, fmt: str, concurrency: int, progress: bool | None, seed: int) -> int:
    from accountapi._client import AccountClient
    from accountapi._config import Limits
    from accountapi.testing import Emulator
    from accountapi.testing._serve import plant_mix

    async with Emulator(latency=0.02) as emu:
        planted = plant_mix(emu, n_keys, random.Random(seed))  # noqa: S311 - a demo's mix
        source = _KeySource.of("demo", list(planted))
        wrong = 0

        def check(result: BalanceResult) -> None:
            nonlocal wrong
            if not _as_planted(emu, result, planted[result.key]):
                wrong += 1

        client = AccountClient(base_url=emu.url, limits=Limits(max_connections=concurrency))
        await _balances(
            client,
            source,
            fmt=fmt,
            concurrency=concurrency,
            ordered=False,
            progress=progress,
            on_result=check,
        )
    if wrong:
        _stderr().print(f"demo: {wrong} results differ from what was planted", markup=False)
        return EXIT_FAILED
    _stderr().print(
        f"demo: all {n_keys} results match what was planted in the emulator", markup=False
    )
    return EXIT_OK


def _as_planted(emu: Emulator, result: BalanceResult, expected: str) -> bool:
    """Whether a result is what the demo planted: the exact balance, or the planted error."""
    if expected != "ok":
        return type(result.error).__name__ == expected
    truth = emu.profile(result.key)
    p = result.profile
    return (
        p is not None
        and str(p.balance_eur) == truth["balance_eur"]
        and str(p.held_eur) == truth["held_eur"]
    )
