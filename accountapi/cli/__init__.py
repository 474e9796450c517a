"""The ``accountapi`` command line: ``profile``, ``balances``, ``emulator`` and ``demo``.

Built on click and rich, which come with the ``cli`` extra; only `accountapi.__main__`
imports this package, so library users never load either. Keys are shown only as hints
(``dpct_…abcd``), in results, errors and progress alike. Every failure to run is one line
on stderr and exit status 2, never a traceback.

One module per job: ``_process`` (exit statuses, signals, a closed stdout, the event
loop), ``_keyfile`` (reading keys files and pipes), ``_writers`` (rows, progress, the
summary), ``_options`` (what the commands share), a module per command, and the files a
run writes or reads back (``_output``, ``_resume``, ``_prometheus``).

At module level these import only click, rich and the SDK's light leaves (errors, keys,
defaults); the client, the many-keys engine and the emulator (so aiohttp) are imported
inside the commands, so ``--help`` loads none of them (``python -m benchmarks.cli_startup``).
"""

# The cli extra's libraries first, by name: without them importing this package fails
# here with their own ImportError, which accountapi.__main__ turns into an install hint.
import click  # noqa: F401
import rich.console  # noqa: F401

from ._app import cli, run
from ._process import (
    EXIT_ALERT,
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTPUT_CLOSED,
    EXIT_STATUS_HELP,
    EXIT_TERMINATED,
    EXIT_UNUSABLE,
    EXIT_WRITE_FAILED,
    loop_factory,
)

__all__ = [
    "EXIT_ALERT",
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_STATUS_HELP",
    "EXIT_TERMINATED",
    "EXIT_UNUSABLE",
    "EXIT_WRITE_FAILED",
    "cli",
    "loop_factory",
    "run",
]
