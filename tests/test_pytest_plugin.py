"""The pytest plugin works for a user's project: no conftest, strict and auto mode."""

from __future__ import annotations

import pytest

pytest_plugins = ("pytester",)

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
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        f"asyncio_mode={mode}",
        # pytest-asyncio's own warning about its unset option, not ours; then any warning
        # the plugin causes fails the run.
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-W",
        "error",
    )
    result.assert_outcomes(passed=3)


def test_the_readme_testing_example_passes_in_strict_mode(pytester: pytest.Pytester) -> None:
    """The README's "Testing your own code" block, as written, in a bare project."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("## Testing your own code")
    block = re.compile(r"```python\n(.*?)```", re.S).search(readme, start)
    assert block is not None
    pytester.makepyfile(test_readme=block.group(1))
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    result.assert_outcomes(passed=1)
