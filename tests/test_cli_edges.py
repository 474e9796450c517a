"""`accountapi balances` as an operator runs it: a real process, pipes, FIFOs, signals and
hostile servers (issue 11).

Every test starts `python -m accountapi` as a subprocess against a server on this test's
loop (the emulator, or a raw server for what the emulator never sends), on 127.0.0.1, and
bounds every wait with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from accountapi.testing import Emulator

FULL_KEY = re.compile(r"dpct_[A-Za-z0-9_-]{12,}")
TIMEOUT = 30.0


class Done(NamedTuple):
    code: int
    stdout: str
    stderr: str


async def start(
    *args: str,
    stdin: int = asyncio.subprocess.DEVNULL,
    stdout: int = asyncio.subprocess.PIPE,
    pass_fds: Sequence[int] = (),
) -> asyncio.subprocess.Process:
    """`python -m accountapi ARGS` with stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accountapi",
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=pass_fds,
    )


async def finish(proc: asyncio.subprocess.Process, input: bytes | None = None) -> Done:
    """Wait (bounded) for the process; stdout must be strict UTF-8, stderr too."""
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate(input)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Done(proc.returncode, (out or b"").decode(), err.decode())


async def run_cli(*args: str, input: bytes | None = None) -> Done:
    proc = await start(
        *args, stdin=asyncio.subprocess.DEVNULL if input is None else asyncio.subprocess.PIPE
    )
    return await finish(proc, input)


def assert_clean(done: Done, keys: Sequence[str] = ()) -> None:
    """No traceback, no full key anywhere in the output."""
    assert "Traceback" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    for text in (done.stdout, done.stderr):
        assert not FULL_KEY.search(text)
        for key in keys:
            assert key not in text


def keys_file(path: Path, keys: Sequence[str]) -> Path:
    path.write_text("".join(f"{key}\n" for key in keys))
    return path


# -- 1. totals per account ------------------------------------------------------------------


async def test_totals_count_each_account_once(emulator: Emulator, tmp_path: Path) -> None:
    """Two keys of one account plus a repeated line add that account once; the summary counts keys, distinct keys, accounts."""
    a1 = emulator.add_key({"id": "acct-a", "balance_eur": "10.000000", "held_eur": "1.000000"})
    a2 = emulator.add_key({"id": "acct-a", "balance_eur": "10.000000", "held_eur": "1.000000"})
    b = emulator.add_key({"id": "acct-b", "balance_eur": "5.000000", "held_eur": "0.500000"})
    path = keys_file(tmp_path / "keys.txt", [a1, a2, a1, b])
    done = await run_cli("balances", str(path), "--base-url", emulator.url, "--format", "jsonl")
    assert done.code == 0, done.stderr
    assert len([json.loads(line) for line in done.stdout.splitlines()]) == 4  # one row per line
    assert "4 keys, 3 distinct, of 2 distinct accounts" in done.stderr
    assert (
        "total over 2 accounts (each counted once): balance 15.000000 EUR, held 1.500000 EUR"
        in done.stderr
    )
    assert_clean(done, [a1, a2, b])
