"""Where a benchmark run writes its figures.

A run writes to ``benchmarks/results/runs/`` (not tracked), so measuring never leaves
``git status`` dirty. ``--record`` writes to ``benchmarks/results/`` instead: the committed
figures the README quotes, updated on purpose and committed with the text that cites them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

__all__ = ["COMMITTED", "RUNS", "add_record_flag", "results_dir"]

COMMITTED: Final = Path(__file__).resolve().parent / "results"
RUNS: Final = COMMITTED / "runs"


def add_record_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the committed figures in benchmarks/results/ (default: results/runs/, untracked)",
    )


def results_dir(record: bool) -> Path:
    """The folder a run writes to (created)."""
    folder = COMMITTED if record else RUNS
    folder.mkdir(parents=True, exist_ok=True)
    return folder
