"""The `accountapi` command line, run through its real entry points against the emulator.

Commands that talk to the service run in a worker thread (their own `asyncio.run`) while
the emulator serves from the test's loop; `python -m accountapi` runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from accountapi import key_hint
from accountapi.__main__ import main
from accountapi.cli import cli
from accountapi.testing import Emulator, Fault

FULL_KEY = re.compile(r"dpct_[A-Za-z0-9_-]{12,}")


def invoke(
    args: Sequence[str], *, input: str | None = None, env: dict[str, str] | None = None
) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, catch_exceptions=False)


async def run(args: Sequence[str], **kwargs: object) -> Result:
    """Invoke the CLI off the loop, so the emulator on this loop can answer it."""
    return await asyncio.to_thread(invoke, args, **kwargs)  # type: ignore[arg-type]


def assert_one_line_error(result: Result, *needles: str, code: int = 2) -> str:
    """Exit `code`, nothing on stdout, exactly one `accountapi: error:` line on stderr."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("accountapi: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def assert_no_full_key(result: Result, keys: Sequence[str]) -> None:
    for key in keys:
        assert key not in result.output
        assert key not in result.stderr


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class Mix:
    """A keys file with every kind of key, and what each line must come back as."""

    def __init__(self, emulator: Emulator, tmp_path: Path) -> None:
        self.ok = [emulator.add_key({"balance_eur": f"{i}.125000"}) for i in range(1, 6)]
        self.zero = emulator.add_key({"balance_eur": "0.000000"})
        self.credit = emulator.add_key(fault=Fault.status(402))
        self.transient = emulator.add_key({"balance_eur": "7.000001"})
        emulator.script(self.transient, [Fault.rate_limited(0.01), Fault.html(502)])
        self.unknown = "dpct_unknown_but_wellformed_0001"
        lines = ["# accounts, one per line", "", *self.ok[:3], "   ", self.zero, "# more"]
        lines += [self.credit, self.ok[3], self.unknown, self.transient, self.ok[4]]
        self.lines = lines
        self.keys = [line for line in lines if line.strip() and not line.startswith("#")]
        self.path = tmp_path / "keys.txt"
        self.path.write_text("\n".join(lines) + "\n")

    def line_of(self, key: str) -> int:
        return self.lines.index(key) + 1


# -- entry points --------------------------------------------------------------------------


def test_help_documents_commands_and_exit_statuses() -> None:
    """`accountapi --help` lists the four commands and every exit status."""
    result = invoke(["--help"])
    assert result.exit_code == 0
    for word in ("profile", "balances", "emulator", "demo", "Exit status", "0 ", "1 ", "2 ", "3 "):
        assert word in result.stdout
    for command in ("profile", "balances", "emulator", "demo"):
        sub = invoke([command, "--help"])
        assert sub.exit_code == 0
        assert "Usage: " in sub.stdout


def test_python_dash_m_help_runs_the_real_entry_point() -> None:
    """`python -m accountapi --help` and `balances --help` exit 0 and document the exit statuses."""
    for args in (["--help"], ["balances", "--help"]):
        proc = subprocess.run(
            [sys.executable, "-m", "accountapi", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Exit status" in proc.stdout
        assert "some keys failed authentication (401)" in proc.stdout


def test_help_loads_neither_the_client_nor_the_emulator() -> None:
    """Every command's --help runs without importing aiohttp, the client, the bulk and sync
    modules or the emulator: the commands import them when they run."""
    code = (
        "import contextlib, io, sys\n"
        "from accountapi.__main__ import main\n"
        "for args in ([], ['profile'], ['balances'], ['emulator'], ['demo']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main([*args, '--help']) == 0, args\n"
        "heavy = ('aiohttp', 'accountapi._client', 'accountapi._bulk', 'accountapi._sync',\n"
        "         'accountapi.testing._emulator', 'accountapi.testing._serve')\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in heavy or m in heavy))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


async def _balances_in_process(
    keys: Path, url: str, *, before: str = "", after: str
) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter that runs ``before``, then `main()` of `balances` in-process
    (stdout swallowed; it must exit 0), then ``after``."""
    code = (
        "import contextlib, io, signal, sys\n"
        "from accountapi.__main__ import main\n"
        f"{before}"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    status = main(['balances', {str(keys)!r}, '--base-url', {url!r}])\n"
        "assert status == 0, status\n"
        f"{after}"
    )
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_a_run_without_a_progress_bar_loads_no_rich_progress(
    emulator: Emulator, tmp_path: Path
) -> None:
    """rich.progress (and what it pulls in: live display, tables) is imported only for a
    bar shown, not at start-up of a run whose stderr is not a terminal."""
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(emulator.add_key() for _ in range(3)) + "\n")
    proc = await _balances_in_process(
        keys,
        emulator.url,
        after="print(sorted(m for m in sys.modules if m.startswith('rich.progress')))\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert "checked 3 keys" in proc.stderr


@pytest.mark.parametrize("own", [True, False])
async def test_main_in_process_gives_the_signal_handlers_back(
    emulator: Emulator, tmp_path: Path, own: bool
) -> None:
    """main() called by a program that goes on: after a run (its event loop handled
    SIGTERM and Ctrl-C) the program has its own handlers back, or Python's defaults."""
    keys = tmp_path / "keys.txt"
    keys.write_text(emulator.add_key() + "\n")
    proc = await _balances_in_process(
        keys,
        emulator.url,
        before=(
            "def mine(signum, frame): pass\n"
            f"if {own}:\n"
            "    signal.signal(signal.SIGTERM, mine); signal.signal(signal.SIGINT, mine)\n"
            "before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))\n"
        ),
        after=(
            "after = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))\n"
            "print(after == before)\n"
        ),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


def test_without_click_or_rich_main_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the cli extra missing, main() prints one install hint on stderr and returns 2."""
    monkeypatch.delitem(sys.modules, "accountapi.cli")
    monkeypatch.setitem(sys.modules, "rich.console", None)
    assert main(["--help"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == (
        "accountapi: the command line needs click and rich: install the cli extra "
        "(pip install '.[cli]' from a clone, 'accountapi[cli]' from an index)"
    )


def test_unknown_command_and_missing_argument_are_one_line_errors() -> None:
    """Usage errors are a single line naming the --help to read, exit 2."""
    assert_one_line_error(invoke(["nosuch"]), "No such command", "accountapi --help")
    assert_one_line_error(invoke(["balances"]), "Missing argument", "accountapi balances --help")


# -- profile ---------------------------------------------------------------------------------


async def test_profile_readable_from_the_environment(emulator: Emulator) -> None:
    """`profile` reads $ACCOUNTAPI_API_KEY and prints aligned fields with exact money."""
    key = emulator.add_key({"balance_eur": "9.955000", "held_eur": "0.045000"})
    result = await run(["profile", "--base-url", emulator.url], env={"ACCOUNTAPI_API_KEY": key})
    assert result.exit_code == 0, result.stderr
    assert re.search(r"^balance_eur\s+9\.955000 EUR$", result.stdout, re.M)
    assert re.search(r"^held_eur\s+0\.045000 EUR$", result.stdout, re.M)
    assert re.search(r"^email\s+user-\d+@example\.test$", result.stdout, re.M)
    assert_no_full_key(result, [key])


async def test_profile_json_from_a_key_file(emulator: Emulator, tmp_path: Path) -> None:
    """`profile --key-file F --json` prints the wire profile, money as exact strings."""
    key = emulator.add_key(
        {"balance_eur": "123456789012345678901234567890.123456", "free_trial_pending_eur": "2.50"}
    )
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# my key\n\n{key}\n")
    result = await run(
        ["profile", "--key-file", str(key_file), "--json", "--base-url", emulator.url]
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["balance_eur"] == "123456789012345678901234567890.123456"
    assert data["free_trial_pending_eur"] == "2.500000"  # exact, in the CLI's 6-decimal form
    assert data["id"] == emulator.profile(key)["id"]
    assert data["created_at"] == "2025-01-02T03:04:05+00:00"
    assert_no_full_key(result, [key])


async def test_profile_with_depicta_key_and_failures(emulator: Emulator) -> None:
    """$DEPICTA_API_KEY works too; 401 exits 3 and 402 exits 1, each one line naming the key's hint."""
    unknown = "dpct_unknown_but_wellformed_0002"
    result = await run(["profile", "--base-url", emulator.url], env={"DEPICTA_API_KEY": unknown})
    line = assert_one_line_error(result, "AuthenticationError", "401", key_hint(unknown), code=3)
    assert unknown not in line
    broke = emulator.add_key(fault=Fault.status(402))
    result = await run(["profile", "--base-url", emulator.url], env={"ACCOUNTAPI_API_KEY": broke})
    assert_one_line_error(result, "PaymentRequiredError", key_hint(broke), code=1)


@pytest.mark.parametrize(
    ("args", "env", "needles"),
    [
        (["profile"], {}, ("no API key", "--key-file")),
        (["profile", "--key-file", "/nonexistent/key.txt"], {}, ("cannot read", "No such file")),
        (
            ["profile", "--base-url", "ftp://x"],
            {"ACCOUNTAPI_API_KEY": "dpct_abcdefghijklmnop"},
            ("base_url",),
        ),
        (
            ["profile", "--timeout", "0"],
            {"ACCOUNTAPI_API_KEY": "dpct_abcdefghijklmnop"},
            ("--timeout",),
        ),
    ],
)
def test_profile_cannot_run(args: list[str], env: dict[str, str], needles: tuple[str, ...]) -> None:
    """No key, a missing key file, a bad base URL or timeout: one line, exit 2."""
    assert_one_line_error(invoke(args, env=env), *needles)


def test_profile_unreachable_base_url() -> None:
    """A base URL nothing listens on is 'cannot reach', exit 2."""
    url = f"http://127.0.0.1:{closed_port()}"
    result = invoke(
        ["profile", "--base-url", url, "--max-retries", "0"],
        env={"ACCOUNTAPI_API_KEY": "dpct_abcdefghijklmnop"},
    )
    assert_one_line_error(result, "cannot reach", url)


def test_profile_key_file_with_a_bad_line_names_the_line(tmp_path: Path) -> None:
    """A key file whose key line has a space inside is refused by line number, not content."""
    key_file = tmp_path / "key.txt"
    key_file.write_text("# comment\ndpct_secret part_of_key\n")
    line = assert_one_line_error(invoke(["profile", "--key-file", str(key_file)]), "line 2")
    assert "secret" not in line


# -- balances --------------------------------------------------------------------------------


async def test_balances_table(emulator: Emulator, tmp_path: Path) -> None:
    """The table has one row per key, with its file line, hint, result and exact balance; exit 3 on a 401."""
    mix = Mix(emulator, tmp_path)
    result = await run(["balances", str(mix.path), "--base-url", emulator.url, "--no-progress"])
    assert result.exit_code == 3, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "LINE",
        "KEY",
        "RESULT",
        "BALANCE",
        "EUR",
        "HELD",
        "EUR",
        "TRIES",
        "DETAIL",
    ]
    assert len(rows) == len(mix.keys)
    by_line = {int(row.split()[0]): row.split() for row in rows}
    assert set(by_line) == {mix.line_of(k) for k in mix.keys}
    assert by_line[mix.line_of(mix.ok[0])][1:4] == [key_hint(mix.ok[0]), "ok", "1.125000"]
    assert by_line[mix.line_of(mix.zero)][2:4] == ["ok", "0.000000"]
    assert by_line[mix.line_of(mix.credit)][2] == "PaymentRequiredError"
    assert by_line[mix.line_of(mix.unknown)][2] == "AuthenticationError"
    transient = by_line[mix.line_of(mix.transient)]
    assert transient[2:4] == ["ok", "7.000001"]
    assert transient[5] == "3"  # 429, 502, then the profile
    assert_no_full_key(result, mix.keys)
    assert "checked 9 keys" in result.stderr
    assert "7 ok, 2 failed" in result.stderr
    assert "AuthenticationError 1" in result.stderr
    assert "PaymentRequiredError 1" in result.stderr
    assert "balance 22.625001 EUR" in result.stderr  # 1.125 + ... + 5.125, 0, 7.000001


async def test_balances_csv(emulator: Emulator, tmp_path: Path) -> None:
    """CSV has a header and one record per key with exact money and error fields."""
    mix = Mix(emulator, tmp_path)
    result = await run(["balances", str(mix.path), "--format", "csv", "--base-url", emulator.url])
    assert result.exit_code == 3
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(records) == len(mix.keys)
    by_line = {int(r["line"]): r for r in records}
    ok = by_line[mix.line_of(mix.ok[2])]
    assert (ok["ok"], ok["balance_eur"], ok["error"]) == ("true", "3.125000", "")
    unknown = by_line[mix.line_of(mix.unknown)]
    assert (unknown["ok"], unknown["error"], unknown["status"], unknown["code"]) == (
        "false",
        "AuthenticationError",
        "401",
        "auth_invalid",
    )
    assert unknown["request_id"].startswith("req_")
    assert_no_full_key(result, mix.keys)


async def test_balances_jsonl_from_stdin_in_order(emulator: Emulator, tmp_path: Path) -> None:
    """`-` reads stdin; --ordered --format jsonl gives one JSON object per key in file order."""
    mix = Mix(emulator, tmp_path)
    result = await run(
        ["balances", "-", "--format", "jsonl", "--ordered", "--base-url", emulator.url],
        input=mix.path.read_text(),
    )
    assert result.exit_code == 3
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in records] == [mix.line_of(k) for k in mix.keys]
    assert [r["key_hint"] for r in records] == [key_hint(k) for k in mix.keys]
    total = sum((Decimal(r["balance_eur"]) for r in records if r["ok"]), Decimal(0))
    assert total == Decimal("22.625001")
    assert records[mix.keys.index(mix.credit)]["status"] == 402
    assert_no_full_key(result, mix.keys)


async def test_balances_exit_statuses(emulator: Emulator, tmp_path: Path) -> None:
    """Exit 0 when every key is ok, 1 when keys fail without a 401, 3 once any key gets a 401."""
    good = [emulator.add_key() for _ in range(3)]
    broke = emulator.add_key(fault=Fault.status(402))
    cases = {0: good, 1: [*good, broke], 3: [*good, broke, "dpct_unknown_but_wellformed_0003"]}
    for code, keys in cases.items():
        path = tmp_path / f"keys{code}.txt"
        path.write_text("\n".join(keys))
        result = await run(["balances", str(path), "--base-url", emulator.url])
        assert result.exit_code == code, (code, result.stderr)


async def test_balances_progress_on_demand(emulator: Emulator, tmp_path: Path) -> None:
    """--progress draws done/total, rate and errors on stderr even off a terminal; the default does not."""
    mix = Mix(emulator, tmp_path)
    shown = await run(["balances", str(mix.path), "--progress", "--base-url", emulator.url])
    assert "9/9" in shown.stderr
    assert "keys/s" in shown.stderr
    assert "2 errors" in shown.stderr
    assert_no_full_key(shown, mix.keys)
    hidden = await run(["balances", str(mix.path), "--base-url", emulator.url])
    assert "9/9" not in hidden.stderr
    assert "\x1b[" not in hidden.stderr
    assert hidden.stderr.startswith("checked 9 keys")


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (None, ("cannot read keys file", "No such file")),
        ("", ("no keys in",)),
        ("# only comments\n\n   \n", ("no keys in",)),
        ("dpct_good_key_000000001\ndpct_has space_inside_0001\n", ("line 2", "not an API key")),
        ("dpct_good_key_000000001\n\ndpct_ünïcode_0000000001\n", ("line 3", "not an API key")),
    ],
)
def test_balances_bad_keys_files(
    tmp_path: Path, content: str | None, needles: tuple[str, ...]
) -> None:
    """Missing, empty, comment-only files and non-key lines: one line naming the line, exit 2."""
    path = tmp_path / "keys.txt"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    line = assert_one_line_error(invoke(["balances", str(path)]), *needles)
    assert "space_inside" not in line
    assert "code_00" not in line


def test_balances_directory_is_not_a_keys_file(tmp_path: Path) -> None:
    """A directory given as KEYS_FILE is one line, exit 2."""
    assert_one_line_error(invoke(["balances", str(tmp_path)]), "cannot read keys file")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--concurrency", "0"], ("--concurrency", "0")),
        (["--concurrency", "many"], ("--concurrency",)),
        (["--format", "xml"], ("--format",)),
        (["--base-url", "ftp://x"], ("base_url",)),
        (["--base-url", "http://example.com"], ("plain http://",)),
    ],
)
def test_balances_bad_options(tmp_path: Path, extra: list[str], needles: tuple[str, ...]) -> None:
    """Bad concurrency, format or base URL: one line, exit 2, before any request."""
    path = tmp_path / "keys.txt"
    path.write_text("dpct_abcdefghijklmnop\n")
    assert_one_line_error(invoke(["balances", str(path), *extra]), *needles)


def test_balances_unreachable_base_url(tmp_path: Path) -> None:
    """When no request reaches the service, the run stops: 'cannot reach', exit 2, no table."""
    path = tmp_path / "keys.txt"
    path.write_text("".join(f"dpct_abcdefghijklm{i:04d}\n" for i in range(50)))
    url = f"http://127.0.0.1:{closed_port()}"
    result = invoke(["balances", str(path), "--base-url", url, "--max-retries", "0"])
    assert_one_line_error(result, "cannot reach", url)


# -- demo ------------------------------------------------------------------------------------


def test_demo_as_a_subprocess() -> None:
    """`python -m accountapi demo` plants ~300 keys, prints a row for each, and checks every result."""
    proc = subprocess.run(
        [sys.executable, "-m", "accountapi", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.splitlines()[1:]
    assert len(rows) == 300
    results = {row.split()[2] for row in rows}
    assert {"ok", "AuthenticationError", "PaymentRequiredError"} <= results
    assert any(row.split()[3] == "0.000000" for row in rows)
    assert any(row.split()[5] != "1" and row.split()[2] == "ok" for row in rows)  # retried
    assert "all 300 results match what was planted" in proc.stderr
    assert not FULL_KEY.search(proc.stdout + proc.stderr)


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_demo_formats(fmt: str) -> None:
    """The demo writes each format with one entry per planted key."""
    result = invoke(["demo", "--keys", "40", "--format", fmt, "--concurrency", "8"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 40 + (0 if fmt == "jsonl" else 1)
    if fmt == "jsonl":
        assert {json.loads(line)["line"] for line in lines} == set(range(1, 41))
    assert "all 40 results match" in result.stderr
    assert not FULL_KEY.search(result.output + result.stderr)


def test_demo_bad_options() -> None:
    """Demo options out of range are one line, exit 2."""
    assert_one_line_error(invoke(["demo", "--keys", "1"]), "--keys")
    assert_one_line_error(invoke(["demo", "--concurrency", "0"]), "--concurrency")


# -- emulator --------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """`python -m accountapi emulator` on a free port, its keys file pre-existing and world-readable."""
    keys_file = tmp_path / "emulator-keys.txt"
    keys_file.write_text("old\n")
    keys_file.chmod(0o644)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "accountapi",
            "emulator",
            "--port",
            "0",
            "--keys",
            "25",
            "--keys-file",
            str(keys_file),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert match, first
        yield proc, match.group(0), keys_file
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_emulator_serves_writes_private_keys_and_stops_on_ctrl_c(
    served: tuple[subprocess.Popen[str], str, Path],
) -> None:
    """`emulator` writes its keys mode 0600 (even over an old file), serves `balances`, exits 0 on SIGINT."""
    proc, url, keys_file = served
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    keys = keys_file.read_text().split()
    assert len(keys) == 25
    result = invoke(["balances", str(keys_file), "--base-url", url, "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 25
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    assert "stopped" in proc.stderr.read()


def test_emulator_port_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port already taken is one line, exit 2, and no keys file is written."""
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke(["emulator", "--port", str(port)])
    assert_one_line_error(result, "cannot start the emulator")
    assert not (tmp_path / "emulator-keys.txt").exists()


def test_emulator_bad_options() -> None:
    """Negative key counts and impossible ports are one line, exit 2."""
    assert_one_line_error(invoke(["emulator", "--keys", "-1"]), "--keys")
    assert_one_line_error(invoke(["emulator", "--port", "70000"]), "--port")
