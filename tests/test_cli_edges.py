"""`accountapi balances` as an operator runs it: a real process, pipes, FIFOs, signals and
hostile servers (issue 11).

Every test starts `python -m accountapi` as a subprocess against a server on this test's
loop (the emulator, or a raw server for what the emulator never sends), on 127.0.0.1, and
bounds every wait with a timeout.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from rawserver import RawServer, profile_body, response, serve

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


# -- 3 and 4. text from the network --------------------------------------------------------

# Cursor up, erase line, carriage return, bell, a C1 CSI and a title-setting OSC: a
# message that would rewrite the previous row of an operator's terminal.
ANSI_MESSAGE = "\x1b[1A\x1b[2K\rall keys ok\x07\x9b2J"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def hostile_error(request_id_header: bytes | None = None) -> bytes:
    body = json.dumps(
        {
            "error": "credit_\x1b[31minsufficient",
            "message": ANSI_MESSAGE,
            **({} if request_id_header else {"request_id": "req_\x1b]0;owned\x07"}),
        }
    ).encode()
    head = f"HTTP/1.1 402 Payment Required\r\nContent-Length: {len(body)}\r\n"
    head += "Content-Type: application/json\r\n"
    raw = head.encode()
    if request_id_header is not None:
        raw += b"X-Request-Id: " + request_id_header + b"\r\n"
    return raw + b"\r\n" + body


def serving(answer: bytes) -> RawServer:
    async def respond(head: bytes, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(answer)
        await w.drain()

    return RawServer(respond)


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
async def test_ansi_from_the_server_never_reaches_the_terminal(fmt: str, tmp_path: Path) -> None:
    """A server's ESC/BEL/C1 in message, code and request_id come out escaped (table, csv) or JSON-escaped (jsonl)."""
    key = "dpct_hostile_server_key_0001"
    path = keys_file(tmp_path / "keys.txt", [key])
    async with serve(serving(hostile_error())) as server:
        done = await run_cli("balances", str(path), "--base-url", server.url, "--format", fmt)
    assert done.code == 1, done.stderr
    assert not RAW_CONTROLS.search(done.stdout), repr(done.stdout)
    assert not RAW_CONTROLS.search(done.stderr), repr(done.stderr)
    assert done.stdout.count("\n") == (1 if fmt == "jsonl" else 2)  # no row split in two
    if fmt == "jsonl":
        record = json.loads(done.stdout)
        assert record["message"] == " ".join(ANSI_MESSAGE.split())  # the data, intact
        assert record["request_id"] == "req_\x1b]0;owned\x07"
    else:
        assert "\\x1b[1A\\x1b[2K all keys ok\\x07\\x9b2J" in done.stdout
        assert "credit_\\x1b[31minsufficient" in done.stdout
        assert "req_\\x1b]0;owned\\x07" in done.stdout
    assert "PaymentRequiredError 1" in done.stderr
    assert_clean(done, [key])


async def test_ansi_in_a_profile_and_its_errors_is_escaped() -> None:
    """`profile` escapes the service's strings in its fields and in its one-line error."""
    answer = response(body=profile_body(name="\x1b]0;owned\x07Eve", email="e\x1b[2J@example.test"))
    env_key = "dpct_hostile_profile_key_0001"
    for body, code in ((answer, 0), (hostile_error(), 1)):
        async with serve(serving(body)) as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "accountapi",
                "profile",
                "--base-url",
                server.url,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "ACCOUNTAPI_API_KEY": env_key},
            )
            done = await finish(proc)
        assert done.code == code, done.stderr
        assert not RAW_CONTROLS.search(done.stdout + done.stderr), repr(done)
        if code == 0:
            assert re.search(r"^name\s+\\x1b]0;owned\\x07Eve$", done.stdout, re.M)
            assert re.search(r"^email\s+e\\x1b\[2J@example\.test$", done.stdout, re.M)
        else:
            assert "\\x1b[1A\\x1b[2K all keys ok" in done.stderr
        assert_clean(done, [env_key])


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
async def test_undecodable_request_id_header_does_not_crash_a_writer(
    fmt: str, tmp_path: Path
) -> None:
    """An X-Request-Id with byte 0xff prints as an escape (table, csv) or JSON escape; no UnicodeEncodeError."""
    key = "dpct_hostile_header_key_0001"
    path = keys_file(tmp_path / "keys.txt", [key, key.replace("0001", "0002")])
    async with serve(serving(hostile_error(b"req_\xff\xfe"))) as server:
        done = await run_cli("balances", str(path), "--base-url", server.url, "--format", fmt)
    assert done.code == 1, done.stderr
    assert "checked 2 keys" in done.stderr
    assert "UnicodeEncodeError" not in done.stderr
    if fmt == "jsonl":
        ids = {json.loads(line)["request_id"] for line in done.stdout.splitlines()}
        assert ids == {"req_\udcff\udcfe"}
    else:
        assert done.stdout.count("req_\\udcff\\udcfe") == 2
    assert_clean(done, [key])


# -- 5. money in plain notation ------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
async def test_money_is_plain_with_six_decimals_or_exactly_more(
    fmt: str, emulator: Emulator, tmp_path: Path
) -> None:
    """1E-7 prints as 0.0000001, 0E-7 as 0.000000, 3 as 3.000000; totals too, never rounded."""
    tiny = emulator.add_key({"balance_eur": "0.0000001", "held_eur": "0.0000000"})
    long = emulator.add_key({"balance_eur": "2.12345670", "held_eur": "3"})
    path = keys_file(tmp_path / "keys.txt", [tiny, long])
    done = await run_cli(
        "balances", str(path), "--base-url", emulator.url, "--format", fmt, "--ordered"
    )
    assert done.code == 0, done.stderr
    assert "E-" not in done.stdout + done.stderr
    if fmt == "table":
        rows = [line.split() for line in done.stdout.splitlines()[1:]]
        assert [row[3:5] for row in rows] == [["0.0000001", "0.000000"], ["2.1234567", "3.000000"]]
    elif fmt == "csv":
        records = list(csv.DictReader(io.StringIO(done.stdout)))
        assert [(r["balance_eur"], r["held_eur"]) for r in records] == [
            ("0.0000001", "0.000000"),
            ("2.1234567", "3.000000"),
        ]
    else:
        records = [json.loads(line) for line in done.stdout.splitlines()]
        assert [(r["balance_eur"], r["held_eur"]) for r in records] == [
            ("0.0000001", "0.000000"),
            ("2.1234567", "3.000000"),
        ]
    assert "balance 2.1234568 EUR, held 3.000000 EUR" in done.stderr


async def test_totals_with_no_ok_key_are_zero_with_six_decimals(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A run where no key is ok totals `0.000000 EUR`, not `0 EUR`."""
    path = keys_file(tmp_path / "keys.txt", ["dpct_unknown_but_wellformed_0009"])
    done = await run_cli("balances", str(path), "--base-url", emulator.url)
    assert done.code == 3, done.stderr
    assert "balance 0.000000 EUR, held 0.000000 EUR" in done.stderr
