"""The ``accountapi`` pytest plugin: fixtures for testing code built on the SDK.

Registered through the ``pytest11`` entry point, so installing ``accountapi`` is enough:
no ``conftest.py``, no ``pytest_plugins``. A top-level module rather than one inside the
package, because pytest imports every installed plugin in every session, and importing
anything under ``accountapi`` runs ``accountapi/__init__`` (aiohttp and the whole SDK).
This module imports only pytest; the SDK is imported inside the fixtures, when a test
first uses one. ``accountapi.testing.pytest_plugin`` offers the same fixtures to a
project that names it in ``pytest_plugins``.

Fixtures (all function-scoped; the first five work in sync and async tests alike):

- ``accountapi_emulator``: a :class:`~accountapi.testing.ThreadedEmulator` on a
  127.0.0.1 ephemeral port, answering from its own thread; stopped after the test.
- ``accountapi_clock``: a :class:`~accountapi.testing.VirtualClock` (instant, recorded
  retry waits and cool-downs).
- ``accountapi_key``: a key the emulator knows, with its default profile.
- ``accountapi_defaults``: for the test's duration, every ``AccountClient`` or
  ``SyncAccountClient`` built without ``base_url``, ``api_key`` or ``clock`` uses the
  emulator, ``accountapi_key`` and ``accountapi_clock``: the clients an application
  builds itself. Test-only; everything is put back after the test.
- ``accountapi_sync_client``: a ``SyncAccountClient`` for that key on the emulator, with
  the virtual clock; closed after the test.
- ``accountapi_client``: an ``AccountClient`` likewise, for async tests run by
  pytest-asyncio (strict or auto mode) or by anyio's plugin on asyncio.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, cast

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

    Sets ``$ACCOUNTAPI_BASE_URL`` and ``$ACCOUNTAPI_API_KEY`` (monkeypatch) and the
    default clock of clients built without ``clock=``; all three are restored after the
    test, also when it fails. Arguments passed explicitly still win.
    """
    from accountapi._clock import override_default_clock

    monkeypatch.setenv("ACCOUNTAPI_BASE_URL", accountapi_emulator.url)
    monkeypatch.setenv("ACCOUNTAPI_API_KEY", accountapi_key)
    with override_default_clock(accountapi_clock):
        yield


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

    Opened and closed on the test's own event loop, by whichever plugin runs the test:
    anyio's (for a test that uses ``anyio_backend``) or pytest-asyncio.
    """
    if not inspect.iscoroutinefunction(getattr(request, "function", None)):
        pytest.fail(
            "accountapi_client is an AccountClient for async tests; "
            "a sync test uses accountapi_sync_client",
            pytrace=False,
        )
    if "anyio_backend" in request.fixturenames:
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
        return cast("AccountClient", request.getfixturevalue("_accountapi_client_anyio"))
    if _asyncio_mode(request.config) is not None:
        return cast("AccountClient", request.getfixturevalue("_accountapi_client_asyncio"))
    pytest.fail(
        "accountapi_client needs an async test runner: install pytest-asyncio "
        f"({_INSTALL}) or mark the test for anyio's plugin (@pytest.mark.anyio)",
        pytrace=False,
    )


def _asyncio_mode(config: pytest.Config) -> str | None:
    """pytest-asyncio's mode, or None without it."""
    if pytest_asyncio is None or not config.pluginmanager.hasplugin("asyncio"):
        return None
    mode = config.getoption("asyncio_mode", None) or config.getini("asyncio_mode")
    return str(mode)


@pytest.fixture
async def _accountapi_client_anyio(
    accountapi_emulator: ThreadedEmulator, accountapi_key: str, accountapi_clock: VirtualClock
) -> AsyncIterator[AccountClient]:
    """``accountapi_client`` on anyio's loop (anyio runs the async fixtures of its tests)."""
    from accountapi import AccountClient

    url = accountapi_emulator.url
    async with AccountClient(accountapi_key, base_url=url, clock=accountapi_clock) as client:
        yield client


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def _accountapi_client_asyncio(
        accountapi_emulator: ThreadedEmulator,
        accountapi_key: str,
        accountapi_clock: VirtualClock,
    ) -> AsyncIterator[AccountClient]:
        """``accountapi_client`` on pytest-asyncio's loop, in strict and auto mode."""
        from accountapi import AccountClient

        url = accountapi_emulator.url
        async with AccountClient(accountapi_key, base_url=url, clock=accountapi_clock) as client:
            yield client
