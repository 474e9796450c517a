"""`accountapi balances --resume OUTPUT`: a run killed at any point and run again ends with
the output an uninterrupted run writes, no line missing and none twice.

Every run is the real entry point in a child process against the emulator on a loopback
port; interruptions are real signals (SIGKILL, which nothing can catch).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from accountapi.testing import Emulator, Fault

# What must be equal between runs (attempts and elapsed time are not).
_SAME = ("line", "key_hint", "ok", "balance_eur", "held_eur", "error", "status", "account_id")


async def _balances(
    emulator: Emulator, keys: Path, *args: str, kill_after_rows: int | None = None
) -> tuple[int, str]:
    """Run `accountapi balances KEYS ARGS` to its end (or SIGKILL it once the --resume
    file holds ``kill_after_rows`` rows); returns (exit status, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountapi", "balances", str(keys)),
        *("--base-url", emulator.url, "--no-progress", "--concurrency", "4", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if kill_after_rows is not None:
        output = Path(args[args.index("--resume") + 1])
        deadline = time.monotonic() + 30
        while _newlines(output) < kill_after_rows:
            assert proc.returncode is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no rows appeared within 30 s"
            await asyncio.sleep(0.005)  # polling the file the child writes, bounded above
        proc.send_signal(signal.SIGKILL)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    assert kill_after_rows is not None or out == b"", "--resume writes nothing to stdout"
    return proc.returncode, err.decode()


def _newlines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _insert_after_first_line(path: Path, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + text + "\n" + "".join(lines[1:]))


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        for row in rows:
            row["line"] = int(row["line"])
    return sorted(({k: row[k] for k in _SAME} for row in rows), key=lambda r: r["line"])


@pytest.fixture
def keys_file(emulator: Emulator, tmp_path: Path) -> Path:
    """120 keys over 110 accounts (some keys share one), 12 unknown, 6 out of credit, 8
    with a transient 503 first, and comments and blank lines between them."""
    lines = ["# keys for the resume test", ""]
    twin = {"id": "acct_twin", "balance_eur": "5.000000"}
    for i in range(120):
        if i % 10 == 3:
            lines.append("dpct_" + f"unknown{i:03d}".ljust(32, "u"))
        elif i % 20 == 7:
            lines.append(emulator.add_key(fault=Fault.status(402)))
        elif i < 10:
            lines.append(emulator.add_key(twin))
        else:
            key = emulator.add_key({"balance_eur": f"{i}.{i:06d}"}, latency=0.005)
            if i % 15 == 0:
                emulator.script(key, [Fault.status(503)])
            lines.append(key)
        if i % 17 == 0:
            lines.append("")
    path = tmp_path / "keys.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_a_run_killed_at_a_random_point_and_resumed_equals_an_uninterrupted_one(
    emulator: Emulator, keys_file: Path, tmp_path: Path, fmt: str
) -> None:
    """SIGKILL after a random number of rows, then the same command again: the rows equal
    an uninterrupted run's, each line exactly once; the second summary covers the whole
    file (counts, accounts once each, exit status 3 for the unknown keys)."""
    whole = tmp_path / f"whole.{fmt}"
    status, _ = await _balances(emulator, keys_file, "--format", fmt, "--resume", str(whole))
    assert status == 3
    expected = _rows(whole, fmt)
    assert len(expected) == 120

    resumed = tmp_path / f"resumed.{fmt}"
    cut = random.Random(fmt).randint(5, 100)  # noqa: S311 - where to kill, repeatably
    status, _ = await _balances(
        emulator, keys_file, "--format", fmt, "--resume", str(resumed), kill_after_rows=cut
    )
    assert status == -signal.SIGKILL
    before = resumed.read_bytes().count(b"\n")
    assert before < 120 + (fmt == "csv")
    summary = tmp_path / "summary.json"
    status, err = await _balances(
        emulator,
        keys_file,
        "--format",
        fmt,
        "--resume",
        str(resumed),
        "--summary-json",
        str(summary),
    )
    assert status == 3, err
    got = _rows(resumed, fmt)
    assert [r["line"] for r in got] == sorted({r["line"] for r in got})  # none twice
    assert got == expected
    record = json.loads(summary.read_text())
    assert record["checked"] == 120
    assert record["of"] == 120
    assert 0 < record["resumed_lines"] < 120
    assert record["auth_failed"] == 12
    assert record["by_error"] == {"AuthenticationError": 12, "PaymentRequiredError": 6}
    assert record["distinct_keys"] == 120
    # Keys 0-9 but 3 (unknown) and 7 (402) share one account: 8 keys, 1 account.
    assert record["accounts"] == 120 - 12 - 6 - 8 + 1
    assert f"resumed: {record['resumed_lines']} line(s)" in err


async def test_a_torn_last_row_is_cut_and_its_line_checked_again(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    """A row cut off mid-way (what SIGKILL during a write leaves) is removed and its line
    answered again; the rows before it are kept as they were."""
    whole = tmp_path / "whole.jsonl"
    await _balances(emulator, keys_file, "--format", "jsonl", "--resume", str(whole))
    text = whole.read_text().splitlines(keepends=True)
    torn = tmp_path / "torn.jsonl"
    torn.write_text("".join(text[:40]) + text[40][: len(text[40]) // 2])
    status, err = await _balances(emulator, keys_file, "--format", "jsonl", "--resume", str(torn))
    assert status == 3, err
    assert _rows(torn, "jsonl") == _rows(whole, "jsonl")
    assert torn.read_text().splitlines(keepends=True)[:40] == text[:40]


async def test_resuming_a_complete_output_checks_nothing(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.csv"
    await _balances(emulator, keys_file, "--format", "csv", "--resume", str(whole))
    before = whole.read_bytes()
    emulator.reset_stats()
    status, err = await _balances(emulator, keys_file, "--format", "csv", "--resume", str(whole))
    assert status == 3, err
    assert whole.read_bytes() == before
    assert emulator.records == []
    assert "resumed: 120 line(s) answered by an earlier run, 0 checked now" in err


async def test_resume_reads_the_keys_from_a_pipe_too(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    """Keys from stdin (`-`) are numbered as read; the answered lines are skipped."""
    whole = tmp_path / "whole.jsonl"
    await _balances(emulator, keys_file, "--format", "jsonl", "--resume", str(whole))
    lines = whole.read_text().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[::2]))
    emulator.reset_stats()
    read, write = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountapi", "balances", "-", "--format", "jsonl"),
        *("--base-url", emulator.url, "--no-progress", "--resume", str(part)),
        stdin=read,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(read)
    with os.fdopen(write, "wb") as feed:
        feed.write(_read(keys_file))
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 3, err.decode()
    assert _rows(part, "jsonl") == _rows(whole, "jsonl")
    assert len(emulator.records) < 80  # only the other half was asked for (plus a retry)


@pytest.mark.parametrize(
    ("content", "fmt", "message"),
    [
        ("LINE,KEY\n1,x\n", "csv", "header differs"),
        (
            '{"line": 1, "ok": true, "key_hint": "x"}\nnot json\n',
            "jsonl",
            "line 2: not a result row",
        ),
        ("line,key_hint\n", "jsonl", "line 1: not a result row"),
        ('{"line": 999, "ok": true, "key_hint": "x"}\n', "jsonl", "answers line 999"),
        ('{"ok": true}\n', "jsonl", "without its line number"),
    ],
)
async def test_a_file_that_cannot_be_resumed_is_one_line_and_exit_2(
    emulator: Emulator, keys_file: Path, tmp_path: Path, content: str, fmt: str, message: str
) -> None:
    previous = tmp_path / f"previous.{fmt}"
    previous.write_text(content)
    status, err = await _balances(emulator, keys_file, "--format", fmt, "--resume", str(previous))
    assert status == 2
    assert err.startswith("accountapi: error: --resume ")
    assert message in err
    assert err.count("\n") == 1
    assert previous.read_text() == content  # left as it was
    assert emulator.records == []


async def test_a_keys_file_changed_since_the_output_was_written_is_refused(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    """A line inserted above answered lines shifts them: resuming would skip the wrong
    keys, so it is refused before anything is sent."""
    whole = tmp_path / "whole.jsonl"
    await _balances(emulator, keys_file, "--format", "jsonl", "--resume", str(whole))
    part = tmp_path / "part.jsonl"
    part.write_text("".join(whole.read_text().splitlines(keepends=True)[:30]))
    _insert_after_first_line(keys_file, emulator.add_key())
    emulator.reset_stats()
    status, err = await _balances(emulator, keys_file, "--format", "jsonl", "--resume", str(part))
    assert status == 2
    assert "the keys file changed since that output was written" in err
    assert emulator.records == []


async def test_resume_with_the_table_format_is_refused(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    status, err = await _balances(emulator, keys_file, "--resume", str(tmp_path / "out.txt"))
    assert status == 2
    assert "--resume needs --format jsonl or csv" in err


async def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    """Two runs appending to one file would write lines twice: the second is refused
    (exit 2) while the first holds the file, and nothing it did reached the file."""
    out = tmp_path / "out.jsonl"
    slow = emulator.add_key(latency=30)  # keeps the first run going
    other_keys = tmp_path / "slow.txt"
    other_keys.write_text(slow + "\n")
    first = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountapi", "balances", str(other_keys), "--format", "jsonl"),
        *("--base-url", emulator.url, "--no-progress", "--resume", str(out)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def first_is_calling() -> bool:
            return emulator.attempts(slow) == 1

        deadline = time.monotonic() + 20
        while not await first_is_calling():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        status, err = await _balances(
            emulator, keys_file, "--format", "jsonl", "--resume", str(out)
        )
        assert status == 2
        assert "is being written by another run" in err
        assert _newlines(out) == 0
    finally:
        first.kill()
        await first.communicate()


async def test_summary_json_and_resume_on_one_file_is_refused(
    emulator: Emulator, keys_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    status, err = await _balances(
        emulator, keys_file, "--format", "jsonl", "--resume", str(out), "--summary-json", str(out)
    )
    assert status == 2
    assert "name the same file" in err
