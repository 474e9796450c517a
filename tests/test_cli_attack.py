"""`accountapi balances` attacked as a process: outputs that are the process's own streams,
signals at the edges of a run. Each test runs `python -m accountapi` against the emulator
on 127.0.0.1, every wait bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from accountapi.testing import Emulator

TIMEOUT = 30.0


async def run_to(stdout: int, *args: str) -> tuple[int, str]:
    """`python -m accountapi ARGS` with stdout on the given descriptor; (status, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accountapi",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_summary_json_on_dev_stdout_is_written_to_stdout_not_over_its_file(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`--output F --summary-json /dev/stdout >> log`: the JSON is appended to log, as to
    any stdout; log is never replaced by a new file (its earlier lines lost, and what the
    shell writes after the run going to the old, unlinked one)."""
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{emulator.add_key()}\n")
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    shell_stdout = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        code, err = await run_to(
            shell_stdout,
            "balances",
            str(keys),
            "--base-url",
            emulator.url,
            "--format",
            "jsonl",
            "--output",
            str(tmp_path / "rows.jsonl"),
            "--summary-json",
            "/dev/stdout",
        )
        os.write(shell_stdout, b"after\n")
    finally:
        os.close(shell_stdout)
    assert code == 0, err
    text = log.read_text()
    assert text.startswith("before\n"), text
    assert text.endswith("after\n"), text
    summary = json.loads(text[len("before\n") : -len("after\n")])
    assert summary["exit_status"] == 0
    assert summary["ok"] == 1


# A process that gets SIGTERM or Ctrl-C from itself at a chosen point of a run: when
# os.fsync() is called on a file whose path contains MARKER (as a signal from outside
# landing there would), then runs the console script with the remaining arguments.
SIGNAL_AT_FSYNC = """\
import os, signal, sys
marker, signame = sys.argv.pop(1), sys.argv.pop(1)
real_fsync = os.fsync
def fsync(fd):
    if marker in os.readlink(f"/proc/self/fd/{fd}"):
        os.kill(os.getpid(), getattr(signal, signame))
    return real_fsync(fd)
os.fsync = fsync
from accountapi.__main__ import console
sys.exit(console())
"""


async def run_signalled(script: str, marker: str, signame: str, *args: str) -> tuple[int, str]:
    """``python -c SCRIPT MARKER SIGNAME ARGS`` with stderr piped; (status, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        marker,
        signame,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize(("signame", "status"), [("SIGTERM", 143), ("SIGINT", 130)])
async def test_a_signal_while_the_summary_json_is_written_leaves_no_temporary_file(
    emulator: Emulator, tmp_path: Path, signame: str, status: int
) -> None:
    """The first stop signal landing while --summary-json's temporary file is synced: the
    run ends with the signal's status, the previous summary stays, and the temporary file
    goes (only SIGKILL may leave one behind)."""
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{emulator.add_key()}\n")
    summary = tmp_path / "summary.json"
    summary.write_text("previous\n")
    code, err = await run_signalled(
        SIGNAL_AT_FSYNC,
        ".summary.json.",
        signame,
        "balances",
        str(keys),
        "--base-url",
        emulator.url,
        "--format",
        "jsonl",
        "--output",
        str(tmp_path / "rows.jsonl"),
        "--summary-json",
        str(summary),
    )
    assert code == status, err
    assert "Traceback" not in err, err
    assert summary.read_text() == "previous\n"
    assert sorted(os.listdir(tmp_path)) == ["keys.txt", "rows.jsonl", "summary.json"]


# The same, with the signal sent right after os.replace() has put a file whose path
# contains MARKER in place: to the process, or to another of its threads (as the kernel
# may pick one, such as an event loop's resolver thread, for a signal sent to the
# process), whose Python handler then runs in the main thread at once, whatever the main
# thread's signal mask. The first argument after the command's says which.
SIGNAL_AFTER_REPLACE = """\
import os, signal, sys, threading
marker, signame, to = sys.argv.pop(1), sys.argv.pop(1), sys.argv.pop(1)
if to == "thread":
    bystander = threading.Thread(target=threading.Event().wait, daemon=True)
    bystander.start()
    send = lambda signum: signal.pthread_kill(bystander.ident, signum)
else:
    send = lambda signum: os.kill(os.getpid(), signum)
real_replace = os.replace
def replace(src, dst):
    real_replace(src, dst)
    if marker in os.fspath(dst):
        send(getattr(signal, signame))
os.replace = replace
from accountapi.__main__ import console
sys.exit(console())
"""


@pytest.mark.parametrize("to", ["process", "thread"])
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
async def test_a_signal_once_the_summary_json_is_in_place_keeps_its_exit_status(
    emulator: Emulator, tmp_path: Path, signame: str, to: str
) -> None:
    """A stop signal landing just after --summary-json was renamed into place: the
    process exits with the status the summary records, not another one. Taken by
    another thread, the signal may also end the process by itself, if that thread is
    only scheduled once the interpreter has given signals back to the system at its very
    end (a shell shows 128 + N; the summary was written by then)."""
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{emulator.add_key()}\n")
    summary = tmp_path / "summary.json"
    code, err = await run_signalled(
        SIGNAL_AFTER_REPLACE,
        "summary.json",
        signame,
        to,
        "balances",
        str(keys),
        "--base-url",
        emulator.url,
        "--format",
        "jsonl",
        "--summary-json",
        str(summary),
    )
    assert "Traceback" not in err, err
    recorded = json.loads(summary.read_text())["exit_status"]
    if to == "process":
        assert code == recorded, err
    else:
        assert code in (recorded, -getattr(signal, signame)), err
    assert sorted(os.listdir(tmp_path)) == ["keys.txt", "summary.json"]
