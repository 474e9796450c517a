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
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rawserver import RawServer, profile_body, response, serve

from accountapi import BalanceOk, Profile
from accountapi.cli._writers import _JsonlWriter, result_record
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


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_an_account_id_with_controls_is_one_escaped_field_and_resumable(
    emulator: Emulator, tmp_path: Path, fmt: str
) -> None:
    """A service's account id with a newline, CR and ESC: the CSV row stays one line with
    the controls escaped (no cursor moves on a terminal), JSONL keeps the data exact,
    and --resume reads its own file back."""
    hostile = 'acct\n\x1b[31mred\r,"x'
    keys = [emulator.add_key({"id": hostile}), emulator.add_key()]
    path = keys_file(tmp_path / "keys.txt", keys)
    done = await run_cli("balances", str(path), "--base-url", emulator.url, "--format", fmt)
    assert done.code == 0, done.stderr
    assert not RAW_CONTROLS.search(done.stdout), repr(done.stdout)
    rows = done.stdout.splitlines()
    assert len(rows) == (2 if fmt == "jsonl" else 3)  # a header, then one line per key
    if fmt == "jsonl":
        assert json.loads(rows[0])["account_id"] == hostile
    else:
        record = next(csv.DictReader(io.StringIO(done.stdout)))
        assert record["account_id"] == 'acct \\x1b[31mred ,"x'
    out = tmp_path / f"out.{fmt}"
    args = ("balances", str(path), "--base-url", emulator.url, "--format", fmt)
    first = await run_cli(*args, "--resume", str(out))
    assert first.code == 0, first.stderr
    again = await run_cli(*args, "--resume", str(out))
    assert again.code == 0, again.stderr
    assert "resumed: 2 line(s)" in again.stderr
    assert_clean(again, keys)


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


# -- 2. keys from a source that can be read only once --------------------------------------


async def first_row(proc: asyncio.subprocess.Process) -> dict[str, object]:
    """The first JSONL row the process writes, waited for (bounded) before EOF of its input."""
    assert proc.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        line = await proc.stdout.readline()
    assert line, "no row before the input ended"
    row: dict[str, object] = json.loads(line)
    return row


def rows_of(done: Done) -> list[dict[str, object]]:
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.parametrize("arg", ["-", "/dev/stdin"])
async def test_keys_from_a_slow_pipe_stream_before_eof(arg: str, emulator: Emulator) -> None:
    """`cat keys | balances -` and `balances /dev/stdin`: read once, the first row comes before EOF, lines numbered."""
    first, second = emulator.add_key(), emulator.add_key()
    proc = await start(
        "balances", arg, "--base-url", emulator.url, "--format", "jsonl",
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(f"# accounts\n{first}\n".encode())
    await proc.stdin.drain()
    row = await first_row(proc)  # the producer is still open: streaming, not read-to-EOF
    assert (row["line"], row["ok"]) == (2, True)
    proc.stdin.write(f"\n{second}\n".encode())
    proc.stdin.close()
    done = await finish(proc)
    assert done.code == 0, done.stderr
    assert [(r["line"], r["ok"]) for r in rows_of(done)] == [(4, True)]
    assert "checked 2 keys" in done.stderr
    assert_clean(done, [first, second])


async def test_keys_from_process_substitution(emulator: Emulator) -> None:
    """`balances <(cmd)` is a /dev/fd/N pipe: every key is checked once, with its line."""
    keys = [emulator.add_key() for _ in range(3)]
    read_end, write_end = os.pipe()
    try:
        proc = await start(
            "balances", f"/dev/fd/{read_end}", "--base-url", emulator.url, "--format", "jsonl",
            pass_fds=[read_end],
        )  # fmt: skip
    finally:
        os.close(read_end)
    try:
        os.write(write_end, "".join(f"{key}\n\n" for key in keys).encode())
    finally:
        os.close(write_end)
    done = await finish(proc)
    assert done.code == 0, done.stderr
    assert sorted(r["line"] for r in rows_of(done)) == [1, 3, 5]  # type: ignore[type-var]
    assert "checked 3 keys" in done.stderr
    assert_clean(done, keys)


async def test_keys_from_a_named_fifo(emulator: Emulator, tmp_path: Path) -> None:
    """A FIFO is read once, streaming (the first row before the writer is done), then ends at EOF."""
    keys = [emulator.add_key() for _ in range(4)]
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    # Read-write, so this open never blocks and the reader's open finds a writer.
    writer = os.open(fifo, os.O_RDWR)
    try:
        proc = await start(
            "balances", str(fifo), "--base-url", emulator.url, "--format", "jsonl", "--ordered"
        )
        os.write(writer, f"{keys[0]}\n".encode())
        assert (await first_row(proc))["line"] == 1
        os.write(writer, "".join(f"{key}\n" for key in keys[1:]).encode())
    finally:
        os.close(writer)
    done = await finish(proc)
    assert done.code == 0, done.stderr
    assert [r["line"] for r in rows_of(done)] == [2, 3, 4]
    assert "checked 4 keys" in done.stderr
    assert_clean(done, keys)


async def test_a_bad_line_in_a_stream_stops_after_the_keys_before_it(emulator: Emulator) -> None:
    """From a pipe, a bad line is found when read: the keys before it are reported, then one error line, exit 2."""
    good = emulator.add_key()
    done = await run_cli(
        "balances", "-", "--base-url", emulator.url, "--format", "jsonl",
        input=f"{good}\nnot a key at all\n{good}\n".encode(),
    )  # fmt: skip
    assert done.code == 2, done.stderr
    assert [r["line"] for r in rows_of(done)] == [1]
    assert done.stderr.splitlines()[-1] == (
        "accountapi: error: stdin line 2: not an API key (whitespace, control or "
        "non-ASCII characters, or over 512 characters); --skip-invalid skips such lines"
    )
    assert_clean(done, [good])


async def test_an_empty_stream_is_an_error(emulator: Emulator) -> None:
    """A pipe with only comments gives 'no keys in stdin', exit 2, as an empty file does."""
    done = await run_cli("balances", "-", "--base-url", emulator.url, input=b"# none\n\n")
    assert done.code == 2
    assert done.stderr.strip() == (
        "accountapi: error: no keys in stdin (blank lines and # comments are skipped)"
    )


async def test_a_file_growing_during_the_run_is_read_as_it_was(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Lines appended during a run (even a half-written one) are left for the next run: no traceback, one row per original key."""
    keys = [emulator.add_key(latency=0.05) for _ in range(8)]
    path = keys_file(tmp_path / "keys.txt", keys)
    proc = await start(
        "balances", str(path), "--base-url", emulator.url, "--format", "jsonl",
        "--concurrency", "1",
    )  # fmt: skip
    await first_row(proc)
    with path.open("a") as f:
        f.write("".join(f"{emulator.add_key()}\n" for _ in range(5)) + "dpct_half_writ")
    done = await finish(proc)
    assert done.code == 0, done.stderr
    assert sorted(r["line"] for r in rows_of(done)) == list(range(2, 9))  # type: ignore[type-var]
    assert "checked 8 keys" in done.stderr
    assert_clean(done, keys)


# -- 6. SIGTERM and a broken pipe ----------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "code", "word"),
    [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
)
async def test_sigterm_stops_like_ctrl_c(
    signum: int, code: int, word: str, emulator: Emulator, tmp_path: Path
) -> None:
    """SIGTERM (143) and Ctrl-C (130) stop taking keys, print the summary of the rows written, no traceback."""
    keys = [emulator.add_key(latency=0.2) for _ in range(40)]
    path = keys_file(tmp_path / "keys.txt", keys)
    proc = await start(
        "balances", str(path), "--base-url", emulator.url, "--format", "jsonl",
        "--concurrency", "2",
    )  # fmt: skip
    await first_row(proc)
    proc.send_signal(signum)
    done = await finish(proc)
    assert done.code == code, done.stderr
    written = 1 + len(done.stdout.splitlines())
    assert written < len(keys)  # it stopped early
    assert f"checked {written} of 40 keys" in done.stderr
    assert f"{written} ok, 0 failed" in done.stderr
    assert done.stderr.rstrip().endswith(f"accountapi: {word}")
    assert_clean(done, keys)


def read_lines_then_close(fd: int, n: int) -> bytes:
    """What `head -n` does: read until n lines, then close the pipe under the writer."""
    seen = b""
    try:
        while seen.count(b"\n") < n:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(fd)
    return b"\n".join(seen.split(b"\n")[:n])


async def test_a_broken_pipe_exits_141_without_claiming_failures(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`balances … | head -5`: exit 141, a summary with 0 failed, one note, no traceback or 'Exception ignored'."""
    keys = [emulator.add_key() for _ in range(3000)]  # ~800 KB of rows: far beyond a pipe's buffer
    path = keys_file(tmp_path / "keys.txt", keys)
    read_end, write_end = os.pipe()
    try:
        proc = await start(
            "balances", str(path), "--base-url", emulator.url, "--format", "jsonl",
            stdout=write_end,
        )  # fmt: skip
    finally:
        os.close(write_end)
    async with asyncio.timeout(TIMEOUT):
        head = await asyncio.to_thread(read_lines_then_close, read_end, 5)
    assert len(head.splitlines()) == 5
    done = await finish(proc)
    assert done.code == 141, done.stderr
    assert re.search(r"checked \d+ of 3000 keys .*: \d+ ok, 0 failed", done.stderr)
    assert "some keys failed" not in done.stderr
    assert done.stderr.rstrip().endswith(
        "accountapi: stopped early: stdout was closed by its reader"
    )
    assert_clean(done, keys[:50])


# -- operator input: UTF-16 files, /v1 base URLs, plain http, readable hints -----------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
async def test_a_utf16_keys_file_is_named_as_such(
    emulator: Emulator, tmp_path: Path, encoding: str
) -> None:
    """A keys file saved by PowerShell's > (UTF-16 with a BOM): one line saying so, exit 2."""
    key = emulator.add_key()
    path = tmp_path / "keys.txt"
    text = f"{key}\r\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    done = await run_cli("balances", str(path), "--base-url", emulator.url)
    assert done.code == 2
    assert done.stderr.strip().count("\n") == 0
    assert "UTF-16" in done.stderr
    assert "UTF-8" in done.stderr
    assert emulator.records == []
    assert_clean(done, [key])


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
async def test_a_base_url_ending_in_v1_is_refused_up_front(
    emulator: Emulator, tmp_path: Path, suffix: str
) -> None:
    """`--base-url https://…/v1` (how other SDKs spell it) is exit 2 with a clear line, not a
    404 for every key."""
    key = emulator.add_key()
    done = await run_cli(
        "balances", str(keys_file(tmp_path / "k", [key])), "--base-url", emulator.url + suffix
    )
    assert done.code == 2
    assert "must not end in /v1" in done.stderr
    assert emulator.records == []
    assert_clean(done, [key])


async def test_plain_http_to_a_remote_host_needs_the_flag_the_message_names(
    tmp_path: Path,
) -> None:
    """Without the flag: exit 2 naming --allow-insecure-http. With it: the run goes ahead
    (here to a host that refuses connections, so exit 2 "cannot reach", not the http refusal)."""
    keys = keys_file(tmp_path / "k", ["dpct_" + "a" * 32])
    refused = await run_cli("balances", str(keys), "--base-url", "http://192.0.2.1:9")
    assert refused.code == 2
    assert "--allow-insecure-http" in refused.stderr
    allowed = await run_cli(
        "balances",
        str(keys),
        "--base-url",
        "http://127.0.0.2:9",  # loopback: allowed anyway, the flag must be accepted
        "--allow-insecure-http",
        "--max-retries",
        "0",
    )
    assert "no such option" not in allowed.stderr.lower()
    assert "plain http" not in allowed.stderr
    assert_clean(allowed)


async def test_jsonl_writes_the_hint_as_readable_utf8(emulator: Emulator, tmp_path: Path) -> None:
    """The key hint in JSONL is `dpct_…abcd`, not `dpct_\\u2026abcd`; the line is valid JSON."""
    key = emulator.add_key()
    done = await run_cli(
        "balances",
        str(keys_file(tmp_path / "k", [key])),
        "--base-url",
        emulator.url,
        "--format",
        "jsonl",
    )
    assert done.code == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert "\\u2026" not in line
    record = json.loads(line)
    assert record["key_hint"] == "dpct_\u2026" + key[-4:]
    assert_clean(done, [key])


async def test_summary_json_has_the_counts_and_exact_totals(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--summary-json PATH: the run's counts and per-account totals, money as exact strings."""
    a = emulator.add_key({"balance_eur": "1.0000001", "held_eur": "0.250000"})
    b = emulator.add_key({"balance_eur": "2.000000"})
    unknown = "dpct_" + "u" * 32
    path = tmp_path / "summary.json"
    done = await run_cli(
        "balances",
        str(keys_file(tmp_path / "k", [a, b, a, unknown])),
        "--base-url",
        emulator.url,
        "--summary-json",
        str(path),
    )
    assert done.code == 3  # one key failed authentication
    record = json.loads(path.read_text())
    assert record["checked"] == record["of"] == 4
    assert (record["ok"], record["failed"], record["auth_failed"]) == (3, 1, 1)
    assert record["by_error"] == {"AuthenticationError": 1}
    assert (record["distinct_keys"], record["accounts"]) == (3, 2)
    assert record["total_balance_eur"] == "3.0000001"
    assert record["total_held_eur"] == "0.250000"
    assert record["interrupted"] is False
    assert record["exit_status"] == 3
    assert_clean(done, [a, b, unknown])
    assert a not in path.read_text()


async def test_an_unwritable_summary_json_fails_before_any_request(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A --summary-json path that cannot be written is exit 2 before a key is sent."""
    key = emulator.add_key()
    done = await run_cli(
        "balances",
        str(keys_file(tmp_path / "k", [key])),
        "--base-url",
        emulator.url,
        "--summary-json",
        str(tmp_path / "missing-dir" / "s.json"),
    )
    assert done.code == 2
    assert "--summary-json" in done.stderr
    assert emulator.records == []
    assert_clean(done, [key])


@pytest.mark.parametrize("via", ["file", "stdin"])
async def test_skip_invalid_reports_and_counts_bad_lines(
    emulator: Emulator, tmp_path: Path, via: str
) -> None:
    """--skip-invalid: bad lines are named by number (never content), counted, and the
    good keys are all checked; without it the same input stops with exit 2."""
    good = [emulator.add_key() for _ in range(3)]
    secretish = "dpct_" + "s" * 30 + " typo"
    lines = [good[0], secretish, good[1], "not a key at all", good[2]]
    path = keys_file(tmp_path / "k", lines)
    summary = tmp_path / "s.json"
    args = ["--base-url", emulator.url, "--format", "jsonl", "--summary-json", str(summary)]
    if via == "file":
        done = await run_cli("balances", str(path), "--skip-invalid", *args)
    else:
        done = await run_cli("balances", "-", "--skip-invalid", *args, input=path.read_bytes())
    assert done.code == 0, done.stderr
    assert sorted(json.loads(r)["line"] for r in done.stdout.splitlines()) == [1, 3, 5]
    assert "line 2: not an API key, skipped" in done.stderr
    assert "line 4: not an API key, skipped" in done.stderr
    assert done.stderr.count("skipped\n") == 2
    assert "skipped 2 line(s)" in done.stderr
    assert json.loads(summary.read_text())["skipped_lines"] == 2
    assert secretish not in done.stderr
    assert_clean(done, good)
    strict = await run_cli("balances", str(path), "--base-url", emulator.url)
    assert strict.code == 2
    assert "line 2: not an API key" in strict.stderr


# -- 6. the fast paths write what the general ones did -------------------------------------


@pytest.mark.parametrize(
    "wire", ["9.955000", "0.000000", "-0.000000", "-12.500000", "98765432109876543210.000001"]
)
def test_six_decimal_amounts_print_exactly_as_sent(wire: str) -> None:
    """An amount in the service's own six-decimal form prints as sent, sign of zero too."""
    from accountapi.cli._text import money

    assert money(Decimal(wire)) == wire


@settings(max_examples=300, deadline=None)
@given(
    account_id=st.text(),
    key_tail=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789",
        min_size=27,
        max_size=60,
    ),
    balance=st.decimals(allow_nan=False, allow_infinity=False, places=6),
    held=st.decimals(allow_nan=False, allow_infinity=False),
    expires=st.none() | st.datetimes(timezones=st.just(UTC)),
    attempts=st.integers(min_value=0, max_value=100),
    elapsed=st.floats(min_value=0, max_value=1e6) | st.just(float("nan")),
    flags=st.tuples(st.sampled_from([None, True, False]), st.sampled_from([None, True, False])),
    line=st.integers(min_value=1, max_value=10**9),
)
def test_an_ok_jsonl_row_is_json_dumps_of_its_record(
    account_id: str,
    key_tail: str,
    balance: Decimal,
    held: Decimal,
    expires: datetime | None,
    attempts: int,
    elapsed: float,
    flags: tuple[bool | None, bool | None],
    line: int,
) -> None:
    """The JSONL writer's ok row is byte for byte json.dumps of the row's record, as before."""
    profile = Profile(
        id=account_id,
        email="a@example.test",
        balance_eur=balance,
        held_eur=held,
        credit_limit_cents=0,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        email_verified=True,
        pending_credit_notice=False,
        prompt_analysis_opt_in=False,
        two_factor_enabled=False,
        credits_expire_at=expires,
    )
    result = BalanceOk(
        key="dpct_" + key_tail, index=0, profile=profile, attempts=attempts, elapsed=elapsed
    )
    out = io.StringIO()
    _JsonlWriter(out, lambda _: flags).write(result, line)
    expected = json.dumps(result_record(result, line, flags)).replace("\\u2026", "\u2026")
    assert out.getvalue() == expected + "\n"
