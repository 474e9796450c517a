"""The pytest plugin works for a user's project: no conftest, sync and async tests,
pytest-asyncio's strict and auto mode, anyio's plugin, and no cost where it is unused."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ("pytester",)

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PLUGIN_MODULE = PYPROJECT["project"]["entry-points"]["pytest11"]["accountapi"]

# A user's project: the plugin, each warning an error; the two heavy plugins this
# environment also has (not ours) stay out, to keep each run under a second.
RUN = (
    "-p",
    "no:cacheprovider",
    "-p",
    "no:schemathesis",
    "-p",
    "no:hypothesispytest",
    "-W",
    "error",
)
# pytest-asyncio's own warning about its unset option, not ours.
LOOP_SCOPE = ("-o", "asyncio_default_fixture_loop_scope=function")
NO_ASYNC_PLUGIN = ("-p", "no:asyncio", "-p", "no:anyio")

USER_TESTS = """
import pytest
from accountapi import AccountClient, ServiceUnavailableError
from accountapi.testing import Fault

@pytest.mark.asyncio
async def test_profile(accountapi_client, accountapi_emulator, accountapi_key):
    profile = await accountapi_client.account.profile()
    assert profile.email == accountapi_emulator.profile(accountapi_key)["email"]

@pytest.mark.asyncio
async def test_retries_are_instant(accountapi_emulator, accountapi_clock):
    key = accountapi_emulator.add_key({"balance_eur": "1.500000"})
    accountapi_emulator.script(key, [Fault.status(503), Fault.rate_limited(30)])
    async with AccountClient(key, base_url=accountapi_emulator.url, clock=accountapi_clock) as c:
        assert str((await c.account.profile()).balance_eur) == "1.500000"
    assert accountapi_clock.sleeps[-1] >= 30
    assert accountapi_emulator.attempts(key) == 3

@pytest.mark.asyncio
async def test_emulator_is_fresh_per_test(accountapi_emulator):
    assert accountapi_emulator.records == []
    assert accountapi_emulator.url.startswith("http://127.0.0.1:")
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_fixtures_need_no_conftest(pytester: pytest.Pytester, mode: str) -> None:
    """A project with only a test file gets the fixtures from the installed plugin."""
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(*RUN, *LOOP_SCOPE, "-o", f"asyncio_mode={mode}")
    result.assert_outcomes(passed=3)


SYNC_TESTS = """
from accountapi import SyncAccountClient
from accountapi.testing import Fault


def test_sync_client(accountapi_sync_client, accountapi_emulator, accountapi_key, accountapi_clock):
    accountapi_emulator.script(accountapi_key, [Fault.status(503), Fault.rate_limited(30)])
    profile = accountapi_sync_client.account.profile()
    assert profile.email == accountapi_emulator.profile(accountapi_key)["email"]
    assert accountapi_emulator.attempts(accountapi_key) == 3
    assert accountapi_clock.sleeps[-1] >= 30


def test_an_app_client(accountapi_defaults, accountapi_emulator, accountapi_key, accountapi_clock):
    accountapi_emulator.script(accountapi_key, [Fault.rate_limited(30)])
    with SyncAccountClient() as client:  # as an application builds it: no arguments
        client.account.profile()
    assert accountapi_emulator.attempts(accountapi_key) == 2
    assert accountapi_clock.sleeps[-1] >= 30
"""


def test_sync_tests_need_no_async_plugin(pytester: pytest.Pytester) -> None:
    """Plain sync tests get the emulator, the sync client and the defaults, with neither
    pytest-asyncio nor anyio's plugin: the emulator answers from its own thread."""
    pytester.makepyfile(test_user=SYNC_TESTS)
    result = pytester.runpytest_subprocess(*RUN, *NO_ASYNC_PLUGIN)
    result.assert_outcomes(passed=2)


ANYIO_TESTS = """
import pytest


@pytest.mark.anyio
async def test_profile(accountapi_client, accountapi_emulator, accountapi_key):
    profile = await accountapi_client.account.profile()
    assert profile.email == accountapi_emulator.profile(accountapi_key)["email"]
    await accountapi_emulator.wait_for_attempts(accountapi_key, 1)
"""


@pytest.mark.parametrize("asyncio_plugin", ["absent", "strict"])
def test_anyio_tests_get_the_async_client(pytester: pytest.Pytester, asyncio_plugin: str) -> None:
    """A test run by anyio's plugin gets an AccountClient opened and closed on anyio's
    loop, with or without pytest-asyncio (strict mode) beside it."""
    pytester.makepyfile(test_user=ANYIO_TESTS)
    options = ("-p", "no:asyncio") if asyncio_plugin == "absent" else LOOP_SCOPE
    result = pytester.runpytest_subprocess(*RUN, *options)
    result.assert_outcomes(passed=1)


def test_anyio_under_auto_mode_is_refused_with_the_reason(pytester: pytest.Pytester) -> None:
    """pytest-asyncio's auto mode would open the client on its own loop for an anyio test:
    the fixture says so and what to set, instead of leaking connections."""
    pytester.makepyfile(test_user=ANYIO_TESTS)
    result = pytester.runpytest_subprocess(*RUN, *LOOP_SCOPE, "-o", "asyncio_mode=auto")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*auto mode*set asyncio_mode = strict*"])


def test_the_async_client_without_a_runner_names_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    """Without pytest-asyncio or anyio, accountapi_client fails naming the extra to install
    (not "fixture not found"); in a sync test it points at accountapi_sync_client."""
    pytester.makepyfile(
        test_user="""
async def test_async(accountapi_client):
    pass

def test_sync(accountapi_client):
    pass
"""
    )
    result = pytester.runpytest_subprocess(*RUN, *NO_ASYNC_PLUGIN)
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "accountapi_client needs an async test runner: install pytest-asyncio" in out
    assert "(pip install 'accountapi[testing]')" in out
    assert "a sync test uses accountapi_sync_client" in out


def test_the_defaults_are_restored_after_a_failing_test(pytester: pytest.Pytester) -> None:
    """accountapi_defaults puts the environment and the default clock back even when the
    test using it fails."""
    pytester.makepyfile(
        test_user="""
import os
from accountapi._clock import SystemClock, default_clock

def test_fails_while_patched(accountapi_defaults, accountapi_clock):
    assert default_clock() is accountapi_clock
    assert os.environ["ACCOUNTAPI_BASE_URL"].startswith("http://127.0.0.1:")
    raise AssertionError("the test fails")

def test_after_it():
    assert "ACCOUNTAPI_BASE_URL" not in os.environ
    assert "ACCOUNTAPI_API_KEY" not in os.environ
    assert isinstance(default_clock(), SystemClock)
"""
    )
    result = pytester.runpytest_subprocess(*RUN, *NO_ASYNC_PLUGIN)
    result.assert_outcomes(passed=1, failed=1)


def test_the_package_module_serves_projects_that_name_it(pytester: pytest.Pytester) -> None:
    """pytest_plugins = ["accountapi.testing.pytest_plugin"] gives the same fixtures, alone
    (entry point disabled) or beside the installed plugin."""
    pytester.makeconftest('pytest_plugins = ["accountapi.testing.pytest_plugin"]')
    pytester.makepyfile(test_sync=SYNC_TESTS, test_async=USER_TESTS)
    for extra in (("-p", "no:accountapi"), ()):
        result = pytester.runpytest_subprocess(*RUN, *LOOP_SCOPE, *extra)
        result.assert_outcomes(passed=5)


def test_loading_the_plugin_imports_nothing_of_the_sdk() -> None:
    """The module the pytest11 entry point names imports neither aiohttp nor any of
    accountapi, so a project that uses no fixture pays nothing for it."""
    code = (
        f"import sys, {PLUGIN_MODULE}; "
        "print([m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'accountapi')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_plugin_module_ships_in_the_wheel() -> None:
    """The wheel includes the top-level module the entry point names."""
    shipped = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["only-include"]
    assert f"{PLUGIN_MODULE}.py" in shipped
    assert (ROOT / f"{PLUGIN_MODULE}.py").is_file()
    assert re.fullmatch(r"[a-z_]+", PLUGIN_MODULE)  # top level: no package to import first
