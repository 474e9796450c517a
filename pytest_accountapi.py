"""The ``accountapi`` pytest plugin: fixtures for testing code built on the SDK.

Registered through the ``pytest11`` entry point, so installing ``accountapi`` is enough:
no ``conftest.py``, no ``pytest_plugins``. A top-level module rather than one inside the
package, because pytest imports every installed plugin in every session, and importing
anything under ``accountapi`` runs ``accountapi/__init__`` (aiohttp and the whole SDK).
This module imports only pytest; the SDK is imported inside the fixtures, when a test
first uses one. ``accountapi.testing.pytest_plugin`` offers the same fixtures to a
project that names it in ``pytest_plugins``.

Fixtures (all function-scoped; the first five work in sync and async tests alike):

- ``accountapi_emulator``: a [`ThreadedEmulator`][accountapi.testing.ThreadedEmulator] on a
  127.0.0.1 ephemeral port, answering from its own thread; stopped after the test.
- ``accountapi_clock``: a [`VirtualClock`][accountapi.testing.VirtualClock] (instant, recorded
  retry waits and cool-downs).
- ``accountapi_key``: a key the emulator knows, with its default profile.
- ``accountapi_defaults``: for the test's duration, every ``AccountClient`` or
  ``SyncAccountClient`` built without ``base_url``, ``api_key`` or ``clock`` uses the
  emulator, ``accountapi_key`` and ``accountapi_clock``: the clients an application
  builds itself. Test-only; everything is put back after the test. Set up before the
  test's other function-scoped fixtures, whatever the order of its arguments.
- ``accountapi_sync_client``: a ``SyncAccountClient`` for that key on the emulator, with
  the virtual clock; closed after the test.
- ``accountapi_client``: an ``AccountClient`` likewise, for async tests run by
  pytest-asyncio (strict or auto mode) or by anyio's plugin on asyncio.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Literal, cast, get_args

import pytest

if TYPE_CHECKING:
    from accountapi import AccountClient, SyncAccountClient
    from accountapi.testing import ThreadedEmulator, VirtualClock

try:
    # Already imported by pytest when pytest-asyncio is installed: nothing to pay here.
    import pytest_asyncio
except ImportError:
    pytest_asyncio = None  # type: ignore[assignment]  # absent: the anyio path still works

__all__ = [
    "accountapi_client",
    "accountapi_clock",
    "accountapi_defaults",
    "accountapi_emulator",
    "accountapi_key",
    "accountapi_sync_client",
]

_INSTALL = "pip install 'accountapi[testing]'"


@pytest.fixture
def accountapi_clock() -> VirtualClock:
    """A virtual clock: retry waits and cool-downs take no time and are recorded."""
    from accountapi.testing import VirtualClock

    return VirtualClock()


@pytest.fixture
def accountapi_emulator() -> Iterator[ThreadedEmulator]:
    """The account API emulator on a loopback port and a thread of its own, for one test."""
    from accountapi.testing import ThreadedEmulator

    with ThreadedEmulator() as emulator:
        yield emulator


@pytest.fixture
def accountapi_key(accountapi_emulator: ThreadedEmulator) -> str:
    """A key the emulator knows (default profile)."""
    return accountapi_emulator.add_key()


@pytest.fixture
def accountapi_defaults(
    accountapi_emulator: ThreadedEmulator,
    accountapi_key: str,
    accountapi_clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[None]:
    """Clients built during the test without arguments use the emulator, key and clock.

    Sets ``$ACCOUNTAPI_BASE_URL`` and ``$ACCOUNTAPI_API_KEY`` and removes the fallbacks
    ``$DEPICTA_API_URL`` and ``$DEPICTA_API_KEY`` (monkeypatch), so no key from the
    developer's shell reaches a client; sets the default clock of clients built without
    ``clock=``. All is restored after the test, also when it fails. Arguments passed
    explicitly still win. Set up before the test's other function-scoped fixtures
    (`pytest_collection_modifyitems()`), whatever their order in its arguments.
    """
    from accountapi._clock import override_default_clock

    monkeypatch.setenv("ACCOUNTAPI_BASE_URL", accountapi_emulator.url)
    monkeypatch.setenv("ACCOUNTAPI_API_KEY", accountapi_key)
    monkeypatch.delenv("DEPICTA_API_URL", raising=False)
    monkeypatch.delenv("DEPICTA_API_KEY", raising=False)
    with override_default_clock(accountapi_clock):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Set ``accountapi_defaults`` up first in each test that uses it.

    pytest sets a test's fixtures up in the order of ``item.fixturenames``, so an
    application's fixture named before ``accountapi_defaults`` would build its client
    from the real environment. Moving the name to the front costs one membership test
    per collected test, and nothing per test run (no autouse fixture).
    """
    for item in items:
        names = getattr(item, "fixturenames", None)
        if isinstance(names, list) and "accountapi_defaults" in names:
            names.remove("accountapi_defaults")
            names.insert(0, "accountapi_defaults")


@pytest.fixture
def accountapi_sync_client(
    accountapi_emulator: ThreadedEmulator, accountapi_key: str, accountapi_clock: VirtualClock
) -> Iterator[SyncAccountClient]:
    """A ``SyncAccountClient`` for ``accountapi_key`` on the emulator, with the virtual clock."""
    from accountapi import SyncAccountClient

    with SyncAccountClient(
        accountapi_key, base_url=accountapi_emulator.url, clock=accountapi_clock
    ) as client:
        yield client


@pytest.fixture
def accountapi_client(request: pytest.FixtureRequest) -> AccountClient:
    """An ``AccountClient`` for ``accountapi_key`` on the emulator, with the virtual clock.

    Opened and closed on the test's own event loop, by the plugin that runs the test:
    anyio's for a test marked ``anyio`` (or given ``anyio_backend`` without an asyncio
    marker), else pytest-asyncio, on the loop of the test's loop scope.
    """
    if not inspect.iscoroutinefunction(getattr(request, "function", None)):
        pytest.fail(
            "accountapi_client is an AccountClient for async tests; "
            "a sync test uses accountapi_sync_client",
            pytrace=False,
        )
    runner = _test_runner(request)
    if runner == "anyio":
        _check_anyio_runs_on_asyncio(request)
        return cast("AccountClient", request.getfixturevalue("_accountapi_client_anyio"))
    if runner == "asyncio":
        _check_asyncio_runs_the_fixture(request)
        scope = _test_loop_scope(request)
        return cast("AccountClient", request.getfixturevalue(f"_accountapi_client_{scope}_loop"))
    pytest.fail(
        "accountapi_client needs an async test runner: install pytest-asyncio "
        f"({_INSTALL}) or mark the test for anyio's plugin (@pytest.mark.anyio)",
        pytrace=False,
    )


def _test_runner(request: pytest.FixtureRequest) -> str | None:
    """Which plugin runs this async test: "anyio", "asyncio", or None for neither.

    Decided as the plugins decide: the ``anyio`` marker makes it anyio's; pytest-asyncio
    takes a test marked ``asyncio`` and, in auto mode, every other one; anyio's plugin
    runs what is left if it has ``anyio_backend`` (anyio's auto mode, an autouse fixture).
    """
    node = request.node
    if node.get_closest_marker("anyio") is not None:
        return "anyio"
    mode = _asyncio_mode(request.config)
    if mode is not None and (mode == "auto" or node.get_closest_marker("asyncio") is not None):
        return "asyncio"
    if "anyio_backend" in request.fixturenames:
        return "anyio"
    return None


def _check_anyio_runs_on_asyncio(request: pytest.FixtureRequest) -> None:
    """Fail the test, saying why, where anyio would not open the client on asyncio's loop."""
    backend = request.getfixturevalue("anyio_backend")
    name = backend if isinstance(backend, str) else backend[0]
    if name != "asyncio":
        pytest.fail(f"accountapi needs asyncio; this test runs on {name}", pytrace=False)
    if _asyncio_mode(request.config) == "auto":
        pytest.fail(
            "pytest-asyncio's auto mode runs the async fixtures of anyio tests on its "
            "own loop; set asyncio_mode = strict to use accountapi_client with anyio",
            pytrace=False,
        )


def _check_asyncio_runs_the_fixture(request: pytest.FixtureRequest) -> None:
    """Fail the test, saying why, where anyio's plugin would take the client's fixture.

    anyio's plugin runs every async fixture of a test that has ``anyio_backend`` (an
    autouse one, say) on anyio's own loop when its ``pytest_fixture_setup`` wraps
    pytest-asyncio's, which is the case when it was registered later: the client would
    then be closed on a loop other than the test's.
    """
    if "anyio_backend" not in request.fixturenames:
        return
    hooks = request.config.pluginmanager.hook.pytest_fixture_setup.get_hookimpls()
    names = [hook.plugin_name for hook in hooks]  # the last one wraps all the others
    if "anyio" in names and names.index("anyio") > names.index("asyncio"):
        pytest.fail(
            "this pytest-asyncio test has anyio_backend, so anyio's plugin would run "
            "accountapi_client's fixture on its own loop; give anyio_backend to anyio "
            "tests only, or load anyio's plugin first (-p anyio)",
            pytrace=False,
        )


def _asyncio_mode(config: pytest.Config) -> str | None:
    """pytest-asyncio's mode, or None without it."""
    if pytest_asyncio is None or not config.pluginmanager.hasplugin("asyncio"):
        return None
    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return str(mode)


def _test_loop_scope(request: pytest.FixtureRequest) -> str:
    """The scope of the loop pytest-asyncio runs this test on, found as pytest-asyncio
    finds it: the ``loop_scope`` of the closest ``asyncio`` marker, else the ini default."""
    marker = request.node.get_closest_marker("asyncio")
    kwargs = marker.kwargs if marker is not None else {}
    scope = kwargs.get("loop_scope") or kwargs.get("scope")
    if scope is None:
        try:
            scope = request.config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio before 0.26 has no such option: function
            scope = "function"
    if scope not in _LOOP_SCOPES:
        pytest.fail(f"accountapi_client: unknown asyncio loop scope {scope!r}", pytrace=False)
    return str(scope)


_LoopScope = Literal["function", "class", "module", "package", "session"]
_LOOP_SCOPES: tuple[_LoopScope, ...] = get_args(_LoopScope)


@contextlib.asynccontextmanager
async def _open_client(request: pytest.FixtureRequest) -> AsyncIterator[AccountClient]:
    """The client both paths hand out, opened and closed on the loop running this code."""
    from accountapi import AccountClient

    key = request.getfixturevalue("accountapi_key")
    url = request.getfixturevalue("accountapi_emulator").url
    clock = request.getfixturevalue("accountapi_clock")
    async with AccountClient(key, base_url=url, clock=clock) as client:
        yield client


@pytest.fixture
async def _accountapi_client_anyio(request: pytest.FixtureRequest) -> AsyncIterator[AccountClient]:
    """``accountapi_client`` on anyio's loop (anyio runs the async fixtures of its tests)."""
    async with _open_client(request) as client:
        yield client


if pytest_asyncio is not None:

    def _client_on_loop(loop_scope: _LoopScope) -> object:
        """``accountapi_client`` for a test pytest-asyncio runs on a loop of ``loop_scope``.

        A fixture runs on the loop of its own ``loop_scope``, not the test's, so the client
        is used and closed on the test's loop only if the two match: one fixture per scope,
        each function-scoped (a fresh client per test), the right one chosen per test.
        """

        @pytest_asyncio.fixture(loop_scope=loop_scope, name=f"_accountapi_client_{loop_scope}_loop")
        async def client_on_loop(request: pytest.FixtureRequest) -> AsyncIterator[AccountClient]:
            async with _open_client(request) as client:
                yield client

        return client_on_loop

    _accountapi_client_function_loop = _client_on_loop("function")
    _accountapi_client_class_loop = _client_on_loop("class")
    _accountapi_client_module_loop = _client_on_loop("module")
    _accountapi_client_package_loop = _client_on_loop("package")
    _accountapi_client_session_loop = _client_on_loop("session")
