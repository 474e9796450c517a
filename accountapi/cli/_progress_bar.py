"""The live progress bar of a ``balances`` run: imported only when one is shown, so a run
without it (output to a pipe or file, ``--no-progress``) never loads ``rich.progress``.
"""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = "- keys/s" if speed is None else f"{speed:,.0f} keys/s"
        return Text(text, style="progress.data.speed")


def progress_bar(stderr: IO[str]) -> Progress:
    """The bar, drawn on ``stderr`` as on a terminal."""
    console = Console(file=stderr, force_terminal=True)
    return Progress(
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("[red]{task.fields[errors]} errors"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
