"""The command line owns its event loop: uvloop when installed, asyncio on request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import uvloop
from click.testing import CliRunner

import accountapi.cli._balances_command
from accountapi.cli import cli, loop_factory
from accountapi.testing import Emulator


def test_uvloop_when_installed_and_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    assert loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("ACCOUNTAPI_LOOP", "asyncio")
    assert loop_factory() is None


async def test_balances_runs_on_the_loop_it_chose(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `balances` run (off this loop, as a user's process would run it) checks its
    keys on uvloop's loop; with ACCOUNTAPI_LOOP=asyncio on asyncio's own."""
    keys = tmp_path / "keys.txt"
    keys.write_text("\n".join(emulator.add_key() for _ in range(5)) + "\n")
    seen: list[str] = []
    real = accountapi.cli._balances_command._balances

    async def noting(*args: object, **kwargs: object) -> object:
        seen.append(type(asyncio.get_running_loop()).__module__.split(".")[0])
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(accountapi.cli._balances_command, "_balances", noting)
    args = ["balances", str(keys), "--base-url", emulator.url, "--format", "jsonl"]

    def run() -> int:
        return CliRunner().invoke(cli, args, catch_exceptions=False).exit_code

    assert await asyncio.to_thread(run) == 0
    monkeypatch.setenv("ACCOUNTAPI_LOOP", "asyncio")
    assert await asyncio.to_thread(run) == 0
    assert seen == ["uvloop", "asyncio"]
