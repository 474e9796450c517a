"""The debug switch: one DEBUG line per attempt, never the key; ``ACCOUNTAPI_LOG``."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap

import pytest

from accountapi import AccountClient, APIConnectionError, Timeout
from accountapi.testing import Emulator, Fault, VirtualClock


def _attempt_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "accountapi" and record.levelno == logging.DEBUG
    ]


async def test_each_attempt_logs_one_debug_line_with_no_key(
    emulator: Emulator, clock: VirtualClock, caplog: pytest.LogCaptureFixture
) -> None:
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503)])
    caplog.set_level(logging.DEBUG, logger="accountapi")
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        await client.account.profile()
        await client.account.dismiss_notifications()
    first, second, third = _attempt_lines(caplog)
    failed, answered, dismissed = emulator.records
    assert first.startswith("GET /v1/account/profile -> 503 ServiceUnavailableError (attempt 1, ")
    assert f"request_id={failed.request_id}, key={failed.key_hint})" in first
    assert second.startswith("GET /v1/account/profile -> 200 (attempt 2, ")
    assert f"request_id={answered.request_id}, key={answered.key_hint})" in second
    assert third.startswith("POST /v1/account/notifications/dismiss -> 204 (attempt 1, ")
    assert dismissed.request_id in third
    for record in caplog.records:  # the retry INFO line too: hints only
        assert key not in record.getMessage()
        assert key not in repr(record.args)


async def test_a_connection_failure_is_logged_by_its_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG, logger="accountapi")
    key = "dpct_" + "q" * 32
    async with AccountClient(
        key, base_url=f"http://127.0.0.1:{port}", max_retries=0, timeout=Timeout(total=5)
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.account.profile()
    (line,) = _attempt_lines(caplog)
    assert line.startswith("GET /v1/account/profile -> APIConnectionError (attempt 1, ")
    assert line.endswith("request_id=None, key=dpct_…qqqq)")


async def test_no_attempt_lines_unless_debug_is_on(
    emulator: Emulator, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="accountapi")
    async with AccountClient(key, base_url=emulator.url) as client:
        await client.account.profile()
    assert _attempt_lines(caplog) == []
    assert caplog.records == []


SCRIPT = textwrap.dedent(
    """
    import asyncio
    from accountapi import AccountClient
    from accountapi.testing import Emulator

    async def main():
        async with Emulator() as emu:
            key = emu.add_key()
            async with AccountClient(key, base_url=emu.url) as client:
                await client.account.profile()
            print(key)

    asyncio.run(main())
    """
)


def _run(env_value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"ACCOUNTAPI_LOG": env_value, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_accountapi_log_debug_prints_attempts_to_stderr_in_a_real_process() -> None:
    done = _run("debug")
    key = done.stdout.strip()
    lines = done.stderr.splitlines()
    (line,) = [line for line in lines if "GET /v1/account/profile" in line]
    assert " accountapi DEBUG GET /v1/account/profile -> 200 (attempt 1, " in line
    assert "key=dpct_…" in line
    assert key not in done.stderr


def test_an_unknown_accountapi_log_value_is_reported_not_raised() -> None:
    done = _run("verbose")
    assert "ACCOUNTAPI_LOG='verbose' is not one of debug, info, warning; ignored" in done.stderr
    assert "GET /v1/account/profile" not in done.stderr


async def test_the_debug_switch_follows_level_changes_between_calls(
    emulator: Emulator, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The per-call check reads logging's memo of the level: turning DEBUG on and off
    between calls of one client takes effect at the next call."""
    caplog.set_level(logging.INFO, logger="accountapi")
    async with AccountClient(key, base_url=emulator.url) as client:
        await client.account.profile()
        assert _attempt_lines(caplog) == []
        caplog.set_level(logging.DEBUG, logger="accountapi")
        await client.account.profile()
        assert len(_attempt_lines(caplog)) == 1
        caplog.set_level(logging.INFO, logger="accountapi")
        await client.account.profile()
        assert len(_attempt_lines(caplog)) == 1
