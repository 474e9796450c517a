"""When the CLI cannot write: a full disk (/dev/full), a file at its size limit
(RLIMIT_FSIZE), for every place output goes. Each run is a real process; each ends with
one `accountapi: error:` line, the summary of the rows written, exit 74 ("could not
write", not 1 "some keys failed"), and `--resume` picks up where it stopped."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from test_cli_edges import TIMEOUT, Done, assert_clean, keys_file

from accountapi.cli import EXIT_WRITE_FAILED
from accountapi.testing import Emulator

ROW_BYTES_LIMIT = 2048  # RLIMIT_FSIZE for the child: a few rows, then EFBIG


def _limit_file_size() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_FSIZE, (ROW_BYTES_LIMIT, ROW_BYTES_LIMIT))


async def cli(
    *args: str,
    stdout: int | None = asyncio.subprocess.PIPE,
    stdout_path: str | None = None,
    preexec: Callable[[], None] | None = None,
    env: dict[str, str] | None = None,
) -> Done:
    """`python -m accountapi ARGS`, stdout to a pipe or to ``stdout_path`` (/dev/full)."""
    child_env = {**os.environ, **(env or {})}
    if preexec is not None:
        # Under `pytest --cov` a child also writes coverage's data file at exit, which a
        # file-size limit breaks too ("disk I/O error" on stderr): such a child runs
        # unmeasured (the same code is measured by the tests without a limit).
        child_env = {name: v for name, v in child_env.items() if not name.startswith("COVERAGE_")}
    sink = None if stdout_path is None else os.open(stdout_path, os.O_WRONLY)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "accountapi",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink if sink is not None else stdout,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=preexec,
            env=child_env,
        )
    finally:
        if sink is not None:
            os.close(sink)
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Done(proc.returncode, (out or b"").decode(), err.decode())


def assert_write_failed(done: Done, needle: str, keys: Sequence[str]) -> None:
    """Exit 74, the summary, then exactly one error line naming where it could not write."""
    assert done.code == EXIT_WRITE_FAILED, done
    assert_clean(done, keys)
    errors = [line for line in done.stderr.splitlines() if line.startswith("accountapi: ")]
    assert errors == [errors[-1]]
    assert errors[0].startswith(f"accountapi: error: cannot write {needle}: "), done.stderr


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl", "prometheus"])
async def test_stdout_on_a_full_disk(emulator: Emulator, tmp_path: Path, fmt: str) -> None:
    keys = [emulator.add_key() for _ in range(5)]
    path = keys_file(tmp_path / "keys.txt", keys)
    done = await cli(
        "balances", str(path), "--format", fmt, "--base-url", emulator.url,
        stdout_path="/dev/full",
    )  # fmt: skip
    assert_write_failed(done, "stdout", keys)
    assert "No space left on device" in done.stderr
    assert "checked " in done.stderr  # the summary of what was written (nothing, or all)


async def test_summary_json_on_a_full_disk_keeps_the_rows(
    emulator: Emulator, tmp_path: Path
) -> None:
    keys = [emulator.add_key() for _ in range(5)]
    path = keys_file(tmp_path / "keys.txt", keys)
    done = await cli(
        "balances", str(path), "--format", "jsonl", "--base-url", emulator.url,
        "--summary-json", "/dev/full",
    )  # fmt: skip
    assert_write_failed(done, "--summary-json /dev/full", keys)
    assert len(done.stdout.splitlines()) == 5  # every row was written before it
    assert "checked 5 keys" in done.stderr


@pytest.mark.parametrize("where", ["stdout", "--output"])
async def test_the_summary_json_says_the_run_could_not_write(
    emulator: Emulator, tmp_path: Path, where: str
) -> None:
    """Rows that could not be written end the run with 74: the --summary-json a pipeline
    reads next says 74 and interrupted, not the 0 of the keys' own outcome."""
    keys = [emulator.add_key() for _ in range(40)]
    path = keys_file(tmp_path / "keys.txt", keys)
    summary = tmp_path / "summary.json"
    args = ["balances", str(path), "--format", "jsonl", "--base-url", emulator.url]
    args += ["--summary-json", str(summary)]
    if where == "stdout":
        done = await cli(*args, stdout_path="/dev/full")
    else:
        output = tmp_path / "out.jsonl"
        where = f"--output {output}"
        done = await cli(*args, "--output", str(output), preexec=_limit_file_size)
    assert_write_failed(done, where, keys)
    record = json.loads(summary.read_text())
    assert record["exit_status"] == EXIT_WRITE_FAILED
    assert record["interrupted"] is True
    assert record["checked"] < 40


async def test_output_past_the_file_size_limit_leaves_path_as_it_was(
    emulator: Emulator, tmp_path: Path
) -> None:
    keys = [emulator.add_key() for _ in range(40)]
    path = keys_file(tmp_path / "keys.txt", keys)
    output = tmp_path / "out.jsonl"
    output.write_text("yesterday's results\n")
    done = await cli(
        "balances", str(path), "--format", "jsonl", "--base-url", emulator.url,
        "--output", str(output), preexec=_limit_file_size,
    )  # fmt: skip
    assert_write_failed(done, f"--output {output}", keys)
    assert "File too large" in done.stderr
    assert output.read_text() == "yesterday's results\n"
    assert sorted(os.listdir(tmp_path)) == ["keys.txt", "out.jsonl"]


async def test_resume_past_the_file_size_limit_then_resumed(
    emulator: Emulator, tmp_path: Path
) -> None:
    keys = [emulator.add_key() for _ in range(40)]
    path = keys_file(tmp_path / "keys.txt", keys)
    output = tmp_path / "out.jsonl"
    args = ("balances", str(path), "--format", "jsonl", "--base-url", emulator.url)
    done = await cli(*args, "--resume", str(output), preexec=_limit_file_size)
    assert_write_failed(done, f"--resume {output}", keys)
    assert 0 < output.stat().st_size <= ROW_BYTES_LIMIT
    checked = int(done.stderr.split("checked ", 1)[1].split(" ", 1)[0])
    assert 0 < checked < 40  # the rows written before the limit, counted
    again = await cli(*args, "--resume", str(output))
    assert again.code == 0, again
    assert_clean(again, keys)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["line"] for row in rows) == list(range(1, 41))  # each line once
    assert f"resumed: {checked} line(s) answered by an earlier run" in again.stderr


@pytest.mark.parametrize("args", [["profile"], ["profile", "--json"], ["--help"]])
async def test_other_output_on_a_full_disk_is_one_line(emulator: Emulator, args: list[str]) -> None:
    key = emulator.add_key()
    done = await cli(
        *args,
        stdout_path="/dev/full",
        env={"ACCOUNTAPI_API_KEY": key, "ACCOUNTAPI_BASE_URL": emulator.url},
    )
    assert done.code == EXIT_WRITE_FAILED, done
    assert_clean(done, [key])
    assert done.stderr == "accountapi: error: cannot write stdout: No space left on device\n"


def test_exit_74_is_in_the_help() -> None:
    from accountapi.cli import EXIT_STATUS_HELP

    assert "74  results or --summary-json could not be written" in EXIT_STATUS_HELP
