"""`accountapi emulator` and `python -m accountapi.testing`: one implementation, one set of
defaults, a planted mix to rehearse against, and little memory per key."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import accountapi.cli._emulator_commands
import accountapi.testing.__main__ as testing_main
from accountapi.cli import cli
from accountapi.testing import Emulator
from accountapi.testing._serve import DEFAULTS, ServeOptions


def test_both_command_lines_serve_with_the_same_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no arguments, both front ends hand the one serve() the same options."""
    seen: list[ServeOptions] = []

    async def record(options: ServeOptions, **_: Any) -> None:
        seen.append(options)

    monkeypatch.setattr(accountapi.cli._emulator_commands, "serve_emulator", record)
    monkeypatch.setattr(testing_main, "serve", record)
    assert CliRunner().invoke(cli, ["emulator"], catch_exceptions=False).exit_code == 0
    assert testing_main.main([]) == 0
    assert seen == [DEFAULTS, DEFAULTS]
    assert DEFAULTS.keys_file == "emulator-keys.txt"
    assert DEFAULTS.port == 8080


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start `accountapi emulator` on a free port; (process, url, banner lines)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "accountapi", "emulator", "--port", "0", *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stderr is not None
    banner = [proc.stderr.readline() for _ in range(2)]
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner[0])
    assert match, banner
    more = proc.stderr.readline()
    while "Ctrl-C" not in more:
        banner.append(more)
        more = proc.stderr.readline()
    return proc, match[1], banner


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    return err


def test_the_planted_mix_is_what_balances_reports(tmp_path: Path) -> None:
    """`emulator --mix` announces what it planted; `balances` over its keys file finds
    exactly that many 401s and 402s, and every other key ok after its transient faults."""
    proc, url, banner = _serve(tmp_path, "--mix", "--keys", "300", "--seed", "7")
    try:
        planted = next(line for line in banner if "planted" in line)
        counts = {
            what: int(n)
            for n, what in re.findall(r"(\d+) (profile|unknown key|out of credit)", planted)
        }
        assert sum(counts.values()) == 300
        assert counts["unknown key"] > 0
        assert counts["out of credit"] > 0
        out = subprocess.run(
            [
                *(sys.executable, "-m", "accountapi", "balances", "emulator-keys.txt"),
                *("--base-url", url, "--format", "jsonl", "--no-progress"),
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
    finally:
        err = _stop(proc)
    assert out.returncode == 3, out.stderr  # some keys failed authentication, as planted
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 300
    errors = [row.get("error") for row in rows]
    assert errors.count("AuthenticationError") == counts["unknown key"]
    assert errors.count("PaymentRequiredError") == counts["out of credit"]
    assert errors.count(None) == counts["profile"]
    assert max(row["attempts"] for row in rows) >= 2  # transient faults were planted too
    assert "accountapi emulator stopped" in err


def test_the_same_seed_plants_the_same_mix(tmp_path: Path) -> None:
    first, _, one = _serve(tmp_path, "--mix", "--keys", "50", "--keys-file", "a.txt")
    _stop(first)
    second, _, two = _serve(tmp_path, "--mix", "--keys", "50", "--keys-file", "b.txt")
    _stop(second)
    planted = [next(line for line in b if "planted" in line) for b in (one, two)]
    assert planted[0] == planted[1]


async def test_a_key_costs_the_emulator_little_memory() -> None:
    """20,000 keys, each with a balance of its own, in under 12 MB of Python allocations
    (about 0.5 KB a key, the key strings included; it was 1.7 KB); a key asked for its
    profile still gets a live, editable dict."""
    async with Emulator() as emu:
        tracemalloc.start()
        try:
            keys = [emu.add_key({"balance_eur": "1.000000"}) for _ in range(20_000)]
            used, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert used < 12_000_000, used
        live = emu.profile(keys[0])
        live["balance_eur"] = "2.500000"
        assert emu.profile(keys[0])["balance_eur"] == "2.500000"
        assert emu.profile(keys[1])["balance_eur"] == "1.000000"
        assert emu.profile(keys[1])["id"] != live["id"]
        await asyncio.sleep(0)
