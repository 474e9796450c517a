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


LOOP_SCOPE_TESTS = """
import pytest
from accountapi.testing import Fault

pytestmark = pytest.mark.asyncio({marker})

async def test_first(accountapi_client, accountapi_emulator, accountapi_key):
    await accountapi_client.account.profile()
    assert accountapi_emulator.attempts(accountapi_key) == 1

class TestInAClass:
    async def test_second(self, accountapi_client, accountapi_emulator, accountapi_key):
        accountapi_emulator.script(accountapi_key, [Fault.rate_limited(30)])
        await accountapi_client.account.profile()
        assert accountapi_emulator.attempts(accountapi_key) == 2
"""


@pytest.mark.parametrize(
    ("marker", "options"),
    [
        ('loop_scope="module"', ()),
        ('loop_scope="class"', ("-k", "TestInAClass")),
        ('loop_scope="session"', ()),
        ("", ("-o", "asyncio_default_test_loop_scope=session")),
        ("", ("-o", "asyncio_default_test_loop_scope=module", "-o", "asyncio_mode=auto")),
        ("", ("-o", "asyncio_default_fixture_loop_scope=session", "-o", "asyncio_mode=auto")),
    ],
)
def test_the_async_client_lives_on_the_loop_of_the_tests_loop_scope(
    pytester: pytest.Pytester, marker: str, options: tuple[str, ...]
) -> None:
    """accountapi_client is opened, used and closed on the test's loop whatever its loop
    scope (marker or ini) and whatever the default loop scope of fixtures: no
    "close the client in the event loop it was used in", no unclosed session."""
    pytester.makepyfile(test_user=LOOP_SCOPE_TESTS.format(marker=marker))
    loop_scope = () if "fixture_loop_scope" in " ".join(options) else LOOP_SCOPE
    result = pytester.runpytest_subprocess(*RUN, *loop_scope, *options)
    result.assert_outcomes(passed=1 if "-k" in options else 2)


AUTOUSE_ANYIO_BACKEND = """
import pytest

@pytest.fixture(autouse=True)
def anyio_backend():
    return "asyncio"
"""

ASYNCIO_TEST = """
import pytest

@pytest.mark.asyncio
async def test_profile(accountapi_client, accountapi_emulator, accountapi_key):
    await accountapi_client.account.profile()
    assert accountapi_emulator.attempts(accountapi_key) == 1
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_an_asyncio_test_with_anyio_backend_gets_the_pytest_asyncio_client(
    pytester: pytest.Pytester, mode: str
) -> None:
    """A test marked asyncio is given the client on pytest-asyncio's loop even when it has
    anyio_backend (autouse here): the markers decide, not the fixture names."""
    pytester.makeconftest(AUTOUSE_ANYIO_BACKEND)
    pytester.makepyfile(test_user=ASYNCIO_TEST)
    # anyio's plugin loaded first: pytest-asyncio then runs the async fixtures it owns.
    options = ("-p", "anyio", "-o", f"asyncio_mode={mode}")
    result = pytester.runpytest_subprocess(*RUN, *LOOP_SCOPE, *options)
    result.assert_outcomes(passed=1)


def test_anyio_taking_the_fixtures_of_an_asyncio_test_is_refused_with_the_reason(
    pytester: pytest.Pytester,
) -> None:
    """Where anyio's plugin would run the client's fixture of an asyncio test on its own
    loop (loaded after pytest-asyncio, with anyio_backend given), the fixture says so and
    what to do, instead of leaking connections."""
    pytester.makeconftest(AUTOUSE_ANYIO_BACKEND)
    pytester.makepyfile(test_user=ASYNCIO_TEST)
    result = pytester.runpytest_subprocess(*RUN, *LOOP_SCOPE, "-p", "asyncio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*anyio's plugin would run*(-p anyio)*"])


def test_the_defaults_come_first_and_hide_the_developers_key(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app fixture named before accountapi_defaults still builds its client on the
    emulator, and a real key or URL in $DEPICTA_API_KEY / $DEPICTA_API_URL is out of the
    environment for the test's duration."""
    monkeypatch.setenv("DEPICTA_API_KEY", "dpct_a-real-key-from-the-shell")
    monkeypatch.setenv("DEPICTA_API_URL", "https://api.depicta.ai")
    pytester.makepyfile(
        test_user="""
import os
import pytest
from accountapi import SyncAccountClient

@pytest.fixture
def app_client():
    with SyncAccountClient() as client:
        yield client

def test_app_fixture_first(app_client, accountapi_defaults, accountapi_emulator, accountapi_key):
    assert app_client.base_url == accountapi_emulator.url
    app_client.account.profile()
    assert accountapi_emulator.attempts(accountapi_key) == 1
    assert "DEPICTA_API_KEY" not in os.environ
    assert "DEPICTA_API_URL" not in os.environ

def test_after_it():
    assert os.environ["DEPICTA_API_KEY"] == "dpct_a-real-key-from-the-shell"
"""
    )
    result = pytester.runpytest_subprocess(*RUN, *NO_ASYNC_PLUGIN)
    result.assert_outcomes(passed=2)
