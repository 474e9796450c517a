"""`accountapi balances --below / --expiring-within / --format prometheus / --output` (issue 26):
which keys are running out, as rows, summary, exit status 4 and a monitoring file.

Every run is `python -m accountapi` in a child process against the emulator on a loopback
port; every wait is bounded. Expiry dates are set days away from the real now, so a run
of a few seconds cannot move a key across a window's edge (the edge itself, to the
microsecond, is pinned with an injected now in tests/test_thresholds.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from accountapi._thresholds import is_expiring, parse_amount
from accountapi.testing import Emulator, Fault

FULL_KEY = re.compile(r"dpct_[A-Za-z0-9_-]{12,}")
TIMEOUT = 30.0


class Done(NamedTuple):
    code: int
    stdout: str
    stderr: str


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountapi", *args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process) -> Done:
    try:
        async with asyncio.timeout(TIMEOUT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Done(proc.returncode, (out or b"").decode(), err.decode())  # out: None on a file


async def balances(emulator: Emulator, keys: Path, *args: str) -> Done:
    """`accountapi balances KEYS --base-url EMULATOR --no-progress ARGS`, to its end."""
    proc = await start("balances", str(keys), "--base-url", emulator.url, "--no-progress", *args)
    return await finish(proc)


def keys_file(path: Path, keys: Sequence[str]) -> Path:
    path.write_text("".join(f"{key}\n" for key in keys))
    return path


def assert_clean(done: Done, keys: Sequence[str] = ()) -> None:
    """No traceback and no key anywhere in the output (hints only)."""
    assert "Traceback" not in done.stderr, done.stderr
    for text in (done.stdout, done.stderr):
        assert not FULL_KEY.search(text)
        for key in keys:
            assert key not in text


def assert_one_line_error(done: Done, *needles: str) -> None:
    """Exit 2, nothing on stdout, one `accountapi: error:` line naming the needles."""
    assert done.code == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("accountapi: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]


def listing(folder: Path) -> list[str]:
    """The names in a folder, sorted (hidden temporary files included)."""
    return sorted(os.listdir(folder))


def read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def jsonl(done: Done) -> list[dict[str, Any]]:
    return sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda r: r["line"])


# -- --below -------------------------------------------------------------------------------


@pytest.fixture
def around_five(emulator: Emulator, tmp_path: Path) -> Path:
    """Three keys: just under, at and just over 5 EUR, on lines 1-3."""
    balances_eur = ("4.999999", "5.000000", "5.000001")
    keys = [emulator.add_key({"balance_eur": b, "credits_expire_at": None}) for b in balances_eur]
    return keys_file(tmp_path / "keys.txt", keys)


async def test_below_flags_just_under_not_at_or_over(emulator: Emulator, around_five: Path) -> None:
    """--below 5: 4.999999 is low; 5.000000 (equal) and 5.000001 are not; exit 4."""
    done = await balances(emulator, around_five, "--format", "jsonl", "--below", "5")
    assert done.code == 4, done.stderr
    assert [r["low"] for r in jsonl(done)] == [True, False, False]
    assert [r["expiring"] for r in jsonl(done)] == [None, None, None]  # not asked
    assert "low (balance below 5.000000 EUR): 1 keys, 1 accounts" in done.stderr
    assert_clean(done)


async def test_equality_is_not_low_pinned_from_above(emulator: Emulator, around_five: Path) -> None:
    """--below 5.000001 makes the balance of exactly 5 low, and 5.000001 (equal) still not."""
    done = await balances(emulator, around_five, "--format", "jsonl", "--below", "5.000001")
    assert [r["low"] for r in jsonl(done)] == [True, True, False]


async def test_below_under_every_balance_flags_nothing_and_exits_0(
    emulator: Emulator, around_five: Path
) -> None:
    """--below 4.999999 (equal to the lowest): no key is low, exit 0, rows say false."""
    done = await balances(emulator, around_five, "--format", "csv", "--below", "4.999999")
    assert done.code == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["low"], r["expiring"]) for r in rows] == [("false", "")] * 3


async def test_table_has_an_alert_column_only_with_thresholds(
    emulator: Emulator, around_five: Path
) -> None:
    """The table gains ALERT (low, expiring, both or -) with a threshold, and not without."""
    done = await balances(emulator, around_five, "--below", "5.000001")
    header, *rows = done.stdout.splitlines()
    assert "ALERT" in header.split()
    assert [row.split()[5] for row in rows] == ["low", "low", "-"]
    plain = await balances(emulator, around_five)
    assert "ALERT" not in plain.stdout
    assert plain.code == 0


@pytest.mark.parametrize(
    "value", ["nan", "inf", "-inf", "1e3", "1E-7", "-5", "+5", "5.", ".5", "", "5,50", "five"]
)
async def test_a_bad_below_is_one_line_and_exit_2(
    emulator: Emulator, around_five: Path, value: str
) -> None:
    """--below takes only a plain amount (digits, optional fraction): anything else, one line, exit 2, nothing sent."""
    done = await balances(emulator, around_five, "--below", value)
    assert_one_line_error(done, "--below", "not a plain amount of EUR")
    assert emulator.records == []


@pytest.mark.parametrize("value", ["-1", "seven", "1.5"])
async def test_a_bad_expiring_within_is_one_line_and_exit_2(
    emulator: Emulator, around_five: Path, value: str
) -> None:
    """--expiring-within takes whole days >= 0: anything else, one line, exit 2."""
    done = await balances(emulator, around_five, "--expiring-within", value)
    assert_one_line_error(done, "--expiring-within")
    assert emulator.records == []


# -- --expiring-within ----------------------------------------------------------------------


async def test_expiring_within_expired_soon_far_and_never(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--expiring-within 7: already expired and in 3 days are expiring; in 400 days and
    no expiry date are not; every format says so and the exit status is 4."""
    now = datetime.now(UTC)
    expiries = [
        iso(now - timedelta(days=2)),
        iso(now + timedelta(days=3)),
        iso(now + timedelta(days=400)),
        None,
    ]
    keys = [emulator.add_key({"credits_expire_at": e, "balance_eur": "9.000000"}) for e in expiries]
    path = keys_file(tmp_path / "keys.txt", keys)
    done = await balances(emulator, path, "--format", "jsonl", "--expiring-within", "7")
    assert done.code == 4, done.stderr
    rows = jsonl(done)
    assert [r["expiring"] for r in rows] == [True, True, False, False]
    assert [r["low"] for r in rows] == [None] * 4
    assert rows[3]["credits_expire_at"] is None
    assert rows[0]["credits_expire_at"].startswith(expiries[0][:19])  # type: ignore[index]
    assert "expiring (credits expire within 7 days): 2 keys, 2 accounts" in done.stderr
    # A window that reaches the far date takes it in; none reaches "never".
    wide = await balances(emulator, path, "--format", "jsonl", "--expiring-within", "401")
    assert [r["expiring"] for r in jsonl(wide)] == [True, True, True, False]
    zero = await balances(emulator, path, "--format", "jsonl", "--expiring-within", "0")
    assert [r["expiring"] for r in jsonl(zero)] == [True, False, False, False]
    assert_clean(done, keys)


# -- exit statuses and counts per account ---------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ((), 4),  # low, none failed
        ((Fault.status(402),), 1),  # a failure wins over low
        ((Fault.status(401),), 3),  # and authentication wins over both
    ],
)
async def test_exit_4_only_when_none_failed(
    emulator: Emulator, tmp_path: Path, extra: tuple[Fault, ...], code: int
) -> None:
    """Exit 4 for a low key when no key failed; a failure keeps 1, a 401 keeps 3."""
    keys = [emulator.add_key({"balance_eur": "1.000000"})]
    keys += [emulator.add_key(fault=fault) for fault in extra]
    path = keys_file(tmp_path / "keys.txt", keys)
    summary = tmp_path / "summary.json"
    done = await balances(emulator, path, "--below", "2", "--summary-json", str(summary))
    assert done.code == code, done.stderr
    record = json.loads(summary.read_text())
    assert (record["low"], record["exit_status"]) == (1, code)


async def test_without_thresholds_nothing_is_low_and_exit_is_0(
    emulator: Emulator, tmp_path: Path
) -> None:
    """No --below or --expiring-within: a zero balance that expired is exit 0, rows null."""
    key = emulator.add_key({"balance_eur": "0.000000", "credits_expire_at": "2001-01-01T00:00:00Z"})
    done = await balances(emulator, keys_file(tmp_path / "k", [key]), "--format", "jsonl")
    assert done.code == 0, done.stderr
    assert (jsonl(done)[0]["low"], jsonl(done)[0]["expiring"]) == (None, None)


async def test_summary_counts_keys_and_accounts_each_once(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Three keys of one low, expiring account and one fine account: 3 low keys but 1 low
    account, in the stderr summary and in --summary-json (with the thresholds used)."""
    soon = iso(datetime.now(UTC) + timedelta(days=1))
    shared = {"id": "acct_shared", "balance_eur": "0.500000", "credits_expire_at": soon}
    keys = [emulator.add_key(shared) for _ in range(3)]
    keys.append(emulator.add_key({"balance_eur": "50.000000", "credits_expire_at": None}))
    summary = tmp_path / "summary.json"
    done = await balances(
        emulator, keys_file(tmp_path / "k", keys), "--below", "1.5", "--expiring-within", "30",
        "--summary-json", str(summary),
    )  # fmt: skip
    assert done.code == 4, done.stderr
    assert "low (balance below 1.500000 EUR): 3 keys, 1 accounts" in done.stderr
    assert "expiring (credits expire within 30 days): 3 keys, 1 accounts" in done.stderr
    record = json.loads(summary.read_text())
    assert {k: record[k] for k in ("below_eur", "expiring_within_days", "low", "low_accounts", "expiring", "expiring_accounts", "accounts")} == {
        "below_eur": "1.500000",
        "expiring_within_days": 30,
        "low": 3,
        "low_accounts": 1,
        "expiring": 3,
        "expiring_accounts": 1,
        "accounts": 2,
    }  # fmt: skip
    assert_clean(done, keys)


def test_help_documents_exit_4_and_the_options() -> None:
    """`balances --help` names --below, --expiring-within, --output, prometheus and exit 4."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "accountapi", "balances", "--help"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for needle in (
        "--below EUR",
        "--expiring-within DAYS",
        "--output PATH",
        "prometheus",
        "4 no key failed, but some are low",
    ):
        assert needle in text, needle


# -- --format prometheus ---------------------------------------------------------------------


def families(text: str) -> dict[str, Any]:
    """The exposition parsed by prometheus_client's own parser, by family name."""
    parsed = text_string_to_metric_families(text)
    return {f.name: f for f in parsed}


async def test_prometheus_output_parses_with_one_sample_per_account(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--format prometheus parses (Prometheus and OpenMetrics parsers): one sample per
    account labelled by its first line's hint, success per key, exact money, run gauges."""
    expires = datetime(2031, 5, 6, 7, 8, 9, 250000, tzinfo=UTC)
    shared = {"id": "acct_shared", "balance_eur": "0.0000001", "held_eur": "1.250000",
              "credit_limit_cents": 12345, "credits_expire_at": iso(expires)}  # fmt: skip
    # Line 1 answers last: the account's sample still carries line 1's hint.
    keys = [emulator.add_key(shared, latency=0.3), emulator.add_key(shared)]
    keys.append(
        emulator.add_key(
            {"id": 'we"ird\\id\nx', "balance_eur": "123456789.123456789", "credits_expire_at": None}
        )
    )
    keys.append(emulator.add_key(fault=Fault.status(402)))
    path = keys_file(tmp_path / "keys.txt", keys)
    done = await balances(emulator, path, "--format", "prometheus", "--below", "1")
    assert done.code == 1, done.stderr  # the 402 wins over the low key
    assert_clean(done, keys)
    got = families(done.stdout)
    # OpenMetrics' stricter parser accepts it too (its parser has no annotations upstream).
    assert list(openmetrics_families(done.stdout + "# EOF\n"))  # type: ignore[no-untyped-call]
    for name in (
        "balance_eur",
        "held_eur",
        "credit_limit_eur",
        "credits_expire_timestamp_seconds",
        "check_success",
        "run_keys_checked",
        "run_keys_failed",
        "run_keys_low",
        "run_keys_expiring",
        "run_duration_seconds",
        "run_completion_timestamp_seconds",
    ):
        family = got[f"accountapi_{name}"]
        assert family.type == "gauge", name
        assert family.documentation, name
    balance = {s.labels["account_id"]: s for s in got["accountapi_balance_eur"].samples}
    assert set(balance) == {"acct_shared", 'we"ird\\id\nx'}  # escaped and read back exactly
    hints = [f"dpct_…{key[-4:]}" for key in keys]
    assert balance["acct_shared"].labels["key_hint"] == hints[0]  # the account's first line
    keys_of = {s.labels["account_id"]: s.value for s in got["accountapi_account_keys"].samples}
    assert keys_of == {"acct_shared": 2, 'we"ird\\id\nx': 1}
    # Money is printed exactly from the Decimal: check the text, not the parsed float.
    assert re.search(
        r'^accountapi_balance_eur\{account_id="acct_shared",[^}]*\} 0\.0000001$', done.stdout, re.M
    )
    assert re.search(r"^accountapi_balance_eur\{[^}]*\} 123456789\.123456789$", done.stdout, re.M)
    assert re.search(r"^accountapi_credit_limit_eur\{[^}]*\} 123\.450000$", done.stdout, re.M)
    [expiry] = got["accountapi_credits_expire_timestamp_seconds"].samples  # null: no sample
    assert re.search(r"_expire_timestamp_seconds\{[^}]*\} 1935817689\.25$", done.stdout, re.M)
    assert expiry.value == expires.timestamp()
    success = sorted(
        (s.labels["line"], s.labels["key_hint"], s.value)
        for s in got["accountapi_check_success"].samples
    )
    assert success == [
        ("1", hints[0], 1),
        ("2", hints[1], 1),
        ("3", hints[2], 1),
        ("4", hints[3], 0),
    ]
    low = {s.labels["account_id"]: s.value for s in got["accountapi_low"].samples}
    assert low == {"acct_shared": 1, 'we"ird\\id\nx': 0}
    run = {
        name: got[f"accountapi_run_{name}"].samples[0].value
        for name in ("keys_checked", "keys_failed", "keys_low", "accounts_low")
    }
    assert run == {"keys_checked": 4, "keys_failed": 1, "keys_low": 2, "accounts_low": 1}
    assert (
        abs(got["accountapi_run_completion_timestamp_seconds"].samples[0].value - time.time()) < 60
    )


async def test_prometheus_cannot_be_resumed(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    """--format prometheus --resume is refused: an exposition is written whole, never appended."""
    out = tmp_path / "out.prom"
    done = await balances(emulator, around_five, "--format", "prometheus", "--resume", str(out))
    assert_one_line_error(done, "--resume needs --format jsonl or csv")
    assert not out.exists()


# -- --output --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl", "prometheus"])
async def test_output_writes_every_format_to_the_file_and_nothing_to_stdout(
    emulator: Emulator, around_five: Path, tmp_path: Path, fmt: str
) -> None:
    """--output PATH holds what stdout would have, stdout is empty, no temporary file is
    left, and the file is readable by others as a plain open() would make it (0644)."""
    out = tmp_path / "out" / f"balances.{fmt}"
    out.parent.mkdir()
    old = os.umask(0o022)
    try:
        done = await balances(
            emulator, around_five, "--format", fmt, "--below", "5", "--output", str(out)
        )
    finally:
        os.umask(old)
    assert done.code == 4, done.stderr
    assert done.stdout == ""
    assert os.listdir(out.parent) == [out.name]
    assert out.stat().st_mode & 0o777 == 0o644
    text = out.read_text()
    if fmt == "prometheus":
        assert len(families(text)["accountapi_balance_eur"].samples) == 3
    elif fmt == "jsonl":
        assert [json.loads(line)["low"] for line in text.splitlines()] == [True, False, False]
    else:
        assert len(text.splitlines()) == 4  # a header and three rows


async def test_output_is_replaced_whole_never_seen_half_written(
    emulator: Emulator, tmp_path: Path
) -> None:
    """While the run writes its rows (kept going by the emulator's latency), a reader of
    PATH sees the previous file, whole, at every poll; at the end, the new file whole."""
    keys = [emulator.add_key(latency=0.15) for _ in range(12)]
    path = keys_file(tmp_path / "keys.txt", keys)
    out = tmp_path / "balances.jsonl"
    out.write_text("previous run\n")
    proc = await start(
        "balances", str(path), "--base-url", emulator.url, "--no-progress", "--format", "jsonl",
        "--concurrency", "1", "--output", str(out),
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    temp_rows = 0
    while temp_rows < 3:  # until the temporary file holds rows, the run is still writing
        assert proc.returncode is None, "the run ended before its rows were seen"
        assert time.monotonic() < deadline
        assert out.read_text() == "previous run\n"
        temps = [n for n in listing(tmp_path) if n.startswith(".balances.jsonl.")]
        temp_rows = read(tmp_path / temps[0]).count(b"\n") if temps else 0
        await asyncio.sleep(0.01)  # polling the file the child writes, bounded above
    assert out.read_text() == "previous run\n"  # 3 rows written, none of them visible
    done = await finish(proc)
    assert done.code == 0, done.stderr
    rows = out.read_text().splitlines()
    assert len(rows) == 12
    assert all(json.loads(row)["ok"] for row in rows)
    assert listing(tmp_path) == ["balances.jsonl", "keys.txt"]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("gap", [0.0, 0.005, 0.02, 0.06])
async def test_a_second_signal_stops_at_once_and_cleanly(
    emulator: Emulator, tmp_path: Path, signum: int, code: int, gap: float
) -> None:
    """A second SIGTERM or Ctrl-C while the run winds down from the first (checks being
    cancelled, the summary printed, files closed): the process ends at once with the
    same status, no traceback, --output's PATH and --summary-json as they were and no
    temporary file left. The gaps put the second signal in each phase of the wind-down."""
    keys = [emulator.add_key(latency=0.05) for _ in range(40)]
    path = keys_file(tmp_path / "keys.txt", keys)
    out = tmp_path / "rows.jsonl"
    out.write_text("previous rows\n")
    summary = tmp_path / "summary.json"
    summary.write_text("{}\n")
    for _ in range(3):
        proc = await start(
            "balances", str(path), "--base-url", emulator.url, "--no-progress", "--format",
            "jsonl", "--concurrency", "4", "--output", str(out), "--summary-json", str(summary),
        )  # fmt: skip
        deadline = time.monotonic() + TIMEOUT
        while not any(
            n.startswith(".rows.jsonl.") and read(tmp_path / n) for n in listing(tmp_path)
        ):
            assert proc.returncode is None
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)  # polling the file the child writes, bounded above
        proc.send_signal(signum)
        if gap:
            await asyncio.sleep(gap)  # the second signal's moment, not a wait for anything
        if proc.returncode is None:
            proc.send_signal(signum)
        done = await finish(proc)
        # A signal in the last moments of the interpreter's exit, once Python has given
        # the signal back to the system, ends it by that signal: a shell shows 128 + N
        # for both, and everything was written by then.
        assert done.code in (code, -signum), done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        assert "Exception ignored" not in done.stderr, done.stderr
        assert out.read_text() == "previous rows\n"
        assert listing(tmp_path) == ["keys.txt", "rows.jsonl", "summary.json"]
        record = json.loads(summary.read_text())
        assert record in ({}, record | {"exit_status": code})  # untouched, or this run's


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_the_summary_json_is_replaced_whole_and_says_how_the_run_ended(
    emulator: Emulator, tmp_path: Path, signum: int, code: int
) -> None:
    """While a run goes on, --summary-json still holds the previous run's summary (a
    reader never finds it empty or half written); a run stopped by SIGTERM or Ctrl-C
    leaves its own summary with the exit status the process ends with."""
    keys = [emulator.add_key(latency=0.2) for _ in range(30)]
    path = keys_file(tmp_path / "keys.txt", keys)
    summary = tmp_path / "summary.json"
    summary.write_text('{"previous": true}\n')
    out = tmp_path / "rows.jsonl"
    proc = await start(
        "balances", str(path), "--base-url", emulator.url, "--no-progress", "--format", "jsonl",
        "--concurrency", "2", "--output", str(out), "--summary-json", str(summary),
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not any(n.startswith(".rows.jsonl.") and read(tmp_path / n) for n in listing(tmp_path)):
        assert proc.returncode is None
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)  # polling the file the child writes, bounded above
    assert summary.read_text() == '{"previous": true}\n'  # rows written, summary untouched
    proc.send_signal(signum)
    done = await finish(proc)
    assert done.code == code, done.stderr
    record = json.loads(summary.read_text())
    assert record["exit_status"] == code
    assert record["interrupted"] is True
    assert 0 < record["checked"] < 30
    assert sorted(listing(tmp_path)) == ["keys.txt", "summary.json"]  # no temporary file
    assert_clean(done, keys)


async def test_the_summary_json_of_a_finished_run_says_its_exit_status(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    done = await balances(emulator, around_five, "--below", "5", "--summary-json", str(summary))
    assert done.code == 4, done.stderr
    record = json.loads(summary.read_text())
    assert record["exit_status"] == 4
    assert record["interrupted"] is False


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_an_interrupted_run_leaves_the_output_as_it_was(
    emulator: Emulator, tmp_path: Path, signum: int, code: int
) -> None:
    """SIGTERM or Ctrl-C mid-run: exit 143/130, PATH keeps the previous file, and the
    temporary file is removed."""
    keys = [emulator.add_key(latency=0.2) for _ in range(30)]
    path = keys_file(tmp_path / "keys.txt", keys)
    out = tmp_path / "balances.prom"
    out.write_text("# previous\n")
    proc = await start(
        "balances", str(path), "--base-url", emulator.url, "--no-progress", "--format", "jsonl",
        "--concurrency", "2", "--output", str(out),
    )  # fmt: skip
    deadline = time.monotonic() + TIMEOUT
    while not any(
        n.startswith(".balances.prom.") and read(tmp_path / n) for n in listing(tmp_path)
    ):
        assert proc.returncode is None
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)  # polling the file the child writes, bounded above
    proc.send_signal(signum)
    done = await finish(proc)
    assert done.code == code, done.stderr
    assert out.read_text() == "# previous\n"
    assert listing(tmp_path) == ["balances.prom", "keys.txt"]
    assert_clean(done, keys)


@pytest.mark.parametrize("how", ["same path", "hard link", "symlink", "dot path"])
async def test_output_naming_the_keys_file_is_refused_before_anything_opens(
    emulator: Emulator, around_five: Path, how: str
) -> None:
    """--output naming the keys file (same path, a hard link, a symlink, another
    spelling) is exit 2, one line, before any request; the keys file is untouched."""
    before = read(around_five)
    alias = around_five.parent / "alias.txt"
    if how == "hard link":
        os.link(around_five, alias)
    elif how == "symlink":
        alias.symlink_to(around_five)
    elif how == "dot path":
        alias = around_five.parent / "." / around_five.name
    else:
        alias = around_five
    done = await balances(emulator, around_five, "--format", "prometheus", "--output", str(alias))
    assert_one_line_error(done, "--output and KEYS_FILE name the same file")
    assert read(around_five) == before
    assert emulator.records == []
    assert not [n for n in listing(around_five.parent) if n.endswith(".tmp")]


async def test_summary_json_naming_the_keys_file_or_the_output_is_refused(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    """--summary-json on the keys file (through a hard link) or on --output: exit 2 and
    nothing truncated."""
    before = read(around_five)
    link = tmp_path / "link.txt"
    os.link(around_five, link)
    done = await balances(emulator, around_five, "--summary-json", str(link))
    assert_one_line_error(done, "--summary-json and KEYS_FILE name the same file")
    assert read(around_five) == before
    out = tmp_path / "out.jsonl"
    out.write_text("kept\n")
    done = await balances(emulator, around_five, "--output", str(out), "--summary-json", str(out))
    assert_one_line_error(done, "--summary-json and --output name the same file")
    assert out.read_text() == "kept\n"
    assert emulator.records == []


async def test_output_with_stdin_keys_redirected_from_the_same_file_is_refused(
    emulator: Emulator, around_five: Path
) -> None:
    """Keys from `- < keys.txt` and --output keys.txt: the same inode, refused."""
    with around_five.open("rb") as stdin:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "accountapi", "balances", "-", "--base-url", emulator.url),
            *("--output", str(around_five)),
            stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        done = await finish(proc)
    assert_one_line_error(done, "--output and KEYS_FILE name the same file")


async def _balances_to(emulator: Emulator, keys: Path, stdout: int, *args: str) -> Done:
    """`balances` with its stdout on ``stdout`` (a descriptor the test opened)."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountapi", "balances", str(keys), "--base-url", emulator.url),
        *("--no-progress", *args),
        stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    return await finish(proc)


async def test_summary_json_on_the_file_stdout_writes_the_rows_to_is_refused(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    """Rows on stdout (`> out.csv`) and --summary-json out.csv: the summary, written from
    the file's start, would overwrite the rows. Refused, the file untouched."""
    out = tmp_path / "out.csv"
    out.write_text("kept\n")
    with out.open("a") as stdout:
        done = await _balances_to(
            emulator, around_five, stdout.fileno(), "--format", "csv", "--summary-json", str(out)
        )
    assert_one_line_error(done, "--summary-json and stdout name the same file")
    assert out.read_text() == "kept\n"
    assert emulator.records == []


async def test_rows_appended_to_the_keys_file_are_refused(
    emulator: Emulator, around_five: Path
) -> None:
    """`accountapi balances keys.txt >> keys.txt`: the rows would go into the input."""
    before = read(around_five)
    with around_five.open("a") as stdout:
        done = await _balances_to(emulator, around_five, stdout.fileno(), "--format", "jsonl")
    assert_one_line_error(done, "stdout and KEYS_FILE name the same file")
    assert read(around_five) == before
    assert emulator.records == []


async def test_summary_json_on_the_pipe_the_rows_go_to_is_refused(
    emulator: Emulator, around_five: Path
) -> None:
    """--summary-json /dev/stdout while the rows go to stdout (a pipe): the JSON would
    land in the middle of the rows. Refused before any request."""
    done = await _balances_to(
        emulator, around_five, asyncio.subprocess.PIPE, "--format", "jsonl",
        "--summary-json", "/dev/stdout",
    )  # fmt: skip
    assert_one_line_error(done, "--summary-json and stdout name the same file")
    assert emulator.records == []


async def test_summary_json_on_stdout_is_fine_when_the_rows_go_to_output(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    """With --output, stdout carries nothing else: --summary-json /dev/stdout is allowed."""
    out = tmp_path / "rows.jsonl"
    done = await _balances_to(
        emulator, around_five, asyncio.subprocess.PIPE, "--format", "jsonl",
        "--output", str(out), "--summary-json", "/dev/stdout",
    )  # fmt: skip
    assert done.code in (0, 3), done.stderr
    assert json.loads(done.stdout)["checked"] == len(read(around_five).split())
    assert len(out.read_text().splitlines()) == len(read(around_five).split())


async def test_output_and_resume_together_are_refused(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    """--resume already names where the rows go (appended); --output with it is exit 2."""
    done = await balances(
        emulator, around_five, "--format", "jsonl", "--resume", str(tmp_path / "a.jsonl"),
        "--output", str(tmp_path / "b.jsonl"),
    )  # fmt: skip
    assert_one_line_error(done, "--resume OUTPUT and --output PATH")
    assert [n for n in listing(tmp_path) if n.endswith(".jsonl")] == []


async def test_output_in_a_missing_folder_is_exit_2_before_any_request(
    emulator: Emulator, around_five: Path, tmp_path: Path
) -> None:
    """An --output whose folder does not exist: one line, exit 2, nothing sent."""
    done = await balances(emulator, around_five, "--output", str(tmp_path / "no" / "out.prom"))
    assert_one_line_error(done, "cannot write --output")
    assert emulator.records == []


# -- --resume with thresholds ----------------------------------------------------------------


@pytest.fixture
def mixed(emulator: Emulator, tmp_path: Path) -> Path:
    """Twelve keys: low, expiring, both, neither, and one out of credit (402)."""
    soon = iso(datetime.now(UTC) + timedelta(days=2))
    keys = []
    for i in range(12):
        if i == 5:
            keys.append(emulator.add_key(fault=Fault.status(402)))
            continue
        keys.append(emulator.add_key({
            "balance_eur": f"{i}.500000",
            "credits_expire_at": soon if i % 3 == 0 else None,
        }))  # fmt: skip
    return keys_file(tmp_path / "keys.txt", keys)


def _same(text: str, fmt: str) -> list[tuple[Any, ...]]:
    rows = (
        [json.loads(line) for line in text.splitlines()]
        if fmt == "jsonl"
        else list(csv.DictReader(io.StringIO(text)))
    )
    fields = ("line", "ok", "balance_eur", "credits_expire_at", "low", "expiring")
    return sorted(tuple(str(row[f]) for f in fields) for row in rows)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_resume_with_the_same_thresholds_equals_an_uninterrupted_run(
    emulator: Emulator, mixed: Path, tmp_path: Path, fmt: str
) -> None:
    """A file cut after 5 rows and resumed with the same thresholds ends equal to an
    uninterrupted run, and the summary counts the earlier rows' low/expiring keys too."""
    args = ("--format", fmt, "--below", "4", "--expiring-within", "7")
    whole = tmp_path / f"whole.{fmt}"
    done = await balances(emulator, mixed, *args, "--resume", str(whole), "--concurrency", "1")
    assert done.code == 1, done.stderr  # the 402 wins over the alerts
    cut = tmp_path / f"cut.{fmt}"
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[: 5 + (fmt == "csv")]))
    summary = tmp_path / "summary.json"
    done = await balances(
        emulator, mixed, *args, "--resume", str(cut), "--summary-json", str(summary)
    )
    assert done.code == 1, done.stderr
    assert _same(cut.read_text(), fmt) == _same(whole.read_text(), fmt)
    record = json.loads(summary.read_text())
    assert record["resumed_lines"] == 5
    # balances 0.5..11.5 without 5.5: below 4 are 0.5-3.5; expiring are i = 0, 3, 6, 9.
    assert (record["low"], record["expiring"]) == (4, 4)


@pytest.mark.parametrize(
    ("first", "then", "needle"),
    [
        (
            ("--below", "4"),
            ("--below", "3"),
            "its low (true) is not what --below gives now (false)",
        ),
        (("--below", "4"), (), "its low (true) is not what --below gives now (null)"),
        ((), ("--below", "4"), "its low (null) is not what --below gives now"),
        (
            ("--expiring-within", "7"),
            ("--expiring-within", "1"),
            "--expiring-within gives now (false)",
        ),
    ],
)
async def test_resume_with_other_thresholds_is_refused(
    emulator: Emulator,
    mixed: Path,
    tmp_path: Path,
    first: tuple[str, ...],
    then: tuple[str, ...],
    needle: str,
) -> None:
    """Resuming a file written with other thresholds (or none) is exit 2, one line, the
    file untouched: one OUTPUT never mixes two sets of thresholds."""
    out = tmp_path / "out.jsonl"
    await balances(emulator, mixed, "--format", "jsonl", *first, "--resume", str(out), "--ordered")
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]))  # lines 1-4: balances 0.5-3.5, one expiring in 2 days
    before = out.read_bytes()
    done = await balances(emulator, mixed, "--format", "jsonl", *then, "--resume", str(out))
    assert_one_line_error(done, needle)
    assert out.read_bytes() == before


# -- from a hostile review of --output, --format prometheus and the thresholds ------------


async def test_output_never_replaces_a_fifo_or_device(emulator: Emulator, tmp_path: Path) -> None:
    """--output naming a FIFO is refused with one line and exit 2, and the FIFO stays one
    (a device such as /dev/null, as root, would have become a regular file)."""
    keys = keys_file(tmp_path / "keys.txt", [emulator.add_key()])
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = await balances(emulator, keys, "--format", "csv", "--output", str(fifo))
    assert_one_line_error(done, "not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []


async def test_output_writes_an_undecodable_account_id_escaped(
    emulator: Emulator, tmp_path: Path
) -> None:
    """An account id with a lone surrogate (valid JSON escape, not UTF-8) is written to a
    CSV --output escaped, as on stdout, not as a traceback."""
    key = emulator.add_key({"id": "acct-\ud800-x"})
    keys = keys_file(tmp_path / "keys.txt", [key])
    out = tmp_path / "out.csv"
    done = await balances(emulator, keys, "--format", "csv", "--output", str(out))
    assert_clean(done, [key])
    assert done.code == 0, done.stderr
    assert "acct-\\ud800-x" in out.read_text(encoding="utf-8")


async def test_output_keeps_the_replaced_files_owner(emulator: Emulator, tmp_path: Path) -> None:
    """--output over an existing file keeps its owner and group, as open(PATH, "w") does
    (as root: a file owned by nobody stays nobody's)."""
    keys = keys_file(tmp_path / "keys.txt", [emulator.add_key()])
    out = tmp_path / "out.csv"
    out.write_text("old\n")
    owner = 65534 if os.geteuid() == 0 else os.geteuid()  # nobody, where we may chown
    os.chown(out, owner, owner if os.geteuid() == 0 else os.getegid())
    before = os.stat(out)
    done = await balances(emulator, keys, "--format", "csv", "--output", str(out))
    assert done.code == 0, done.stderr
    after = os.stat(out)
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced whole, not rewritten in place


async def test_a_reader_that_leaves_early_ends_a_prometheus_run_with_141(
    emulator: Emulator, tmp_path: Path
) -> None:
    """`--format prometheus | head -1`: the exposition is cut off, so the run says it
    stopped early and exits 141, as CSV does (it used to exit 0)."""
    keys = keys_file(tmp_path / "keys.txt", [emulator.add_key() for _ in range(3000)])
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "accountapi", "balances", str(keys), "--base-url", emulator.url),
        *("--no-progress", "--format", "prometheus"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        first = await asyncio.to_thread(reader.readline)  # then the reader goes away
    assert first.startswith(b"# HELP")
    async with asyncio.timeout(TIMEOUT):
        _, err = await proc.communicate()
    assert proc.returncode == 141, err.decode()
    assert b"Traceback" not in err


async def test_an_expiry_window_past_the_calendar_is_refused(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--expiring-within 3000000 (past year 9999) is one line and exit 2, not an
    OverflowError; the library treats such a window as covering every expiry date."""
    keys = keys_file(tmp_path / "keys.txt", [emulator.add_key()])
    done = await balances(emulator, keys, "--expiring-within", "3000000")
    assert done.code == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--expiring-within" in done.stderr
    assert is_expiring(
        datetime(9999, 12, 31, tzinfo=UTC), timedelta(days=999_999_999), datetime.now(UTC)
    )
    assert not is_expiring(None, timedelta(days=999_999_999), datetime.now(UTC))


def test_a_long_amount_is_refused_with_the_rule_and_a_short_echo() -> None:
    """An amount with more than 30 digits after the point is refused naming that limit,
    and a 10,000-digit value is not echoed back whole."""
    with pytest.raises(ValueError, match="at most 30 digits") as info:
        parse_amount("0." + "0" * 30 + "1")
    assert "at most 30 digits" in str(info.value)
    with pytest.raises(ValueError, match="not a plain amount") as huge:
        parse_amount("9" * 10_000)
    assert len(str(huge.value)) < 300


async def test_a_refused_output_leaves_the_summary_json_untouched(
    emulator: Emulator, tmp_path: Path
) -> None:
    """--output into a folder that does not exist is refused (exit 2) before
    --summary-json is opened: the summary file keeps its earlier content."""
    keys = keys_file(tmp_path / "keys.txt", [emulator.add_key()])
    summary = tmp_path / "summary.json"
    summary.write_text('{"earlier": true}\n')
    done = await balances(
        emulator,
        keys,
        "--output",
        str(tmp_path / "nodir" / "x.csv"),
        "--summary-json",
        str(summary),
    )
    assert done.code == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert summary.read_text() == '{"earlier": true}\n'


async def test_two_keys_of_one_account_give_one_consistent_exposition(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Two keys of one account answer with different balances, the later line first: the
    account's sample, its low flag and the run's low-accounts count agree (all from the
    earliest line's answer), whichever answer came first."""
    early = emulator.add_key({"id": "acct-1", "balance_eur": "100.000000"}, latency=0.3)
    late = emulator.add_key({"id": "acct-1", "balance_eur": "1.000000"})
    keys = keys_file(tmp_path / "keys.txt", [early, late])
    done = await balances(emulator, keys, "--format", "prometheus", "--below", "5")
    assert done.code == 4, done.stderr  # a key is low
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(done.stdout)
        for sample in family.samples
        if sample.name
        in ("accountapi_balance_eur", "accountapi_low", "accountapi_run_accounts_low")
    }
    assert samples == {
        "accountapi_balance_eur": 100.0,
        "accountapi_low": 0.0,
        "accountapi_run_accounts_low": 0.0,
    }
