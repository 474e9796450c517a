"""The ``accountapi`` group: its commands, and `run()`, what ``accountapi.__main__`` calls."""

from __future__ import annotations

from collections.abc import Sequence

import click

from ._balances_command import balances
from ._emulator_commands import demo, emulator
from ._process import EXIT_STATUS_HELP, _Group
from ._profile_command import profile

__all__ = ["cli", "run"]


def run(argv: Sequence[str] | None = None, *, owns_process: bool = False) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    ``owns_process``: the process ends with this status (the ``accountapi`` command), so
    a stop signal after the command has ended exits at once with it, and the signal
    handlers are not given back.
    """
    code: int = cli.main(
        args=argv, prog_name="accountapi", standalone_mode=False, owns_process=owns_process
    )
    return code


@click.group(
    "accountapi",
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_STATUS_HELP,
)
@click.version_option(package_name="accountapi", message="accountapi %(version)s")
def cli() -> None:
    """Balances and profiles of Depicta API keys, one key or hundreds of thousands.

    Try `accountapi demo` first: it needs no account. Keys are only ever shown as hints
    such as dpct_…abcd.
    """


for _command in (profile, balances, emulator, demo):
    cli.add_command(_command)
del _command
