"""The ``accountapi`` pytest plugin: fixtures for testing code built on the SDK.

Registered through the ``pytest11`` entry point, so installing ``accountapi`` is enough:
no ``conftest.py``, no ``pytest_plugins``. Fixtures (all function-scoped):

- ``accountapi_emulator``: a started :class:`~accountapi.testing.Emulator` on a
  127.0.0.1 ephemeral port, stopped after the test.
- ``accountapi_clock``: a :class:`~accountapi.testing.VirtualClock` (instant, recorded
  retry waits and cool-downs).
- ``accountapi_key``: a key the emulator knows, with its default profile.
- ``accountapi_client``: an :class:`~accountapi.AccountClient` for that key on the
  emulator, using the virtual clock; closed after the test.

The async fixtures are ``pytest_asyncio`` fixtures, so they work in pytest-asyncio's
default strict mode and in auto mode alike; without pytest-asyncio installed only
``accountapi_clock`` is offered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ._clock import VirtualClock
from ._emulator import Emulator

__all__ = ["accountapi_clock"]


@pytest.fixture
def accountapi_clock() -> VirtualClock:
    """A virtual clock: retry waits and cool-downs take no time and are recorded."""
    return VirtualClock()


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the project's own tests run with it
    pass
else:
    from accountapi import AccountClient

    @pytest_asyncio.fixture
    async def accountapi_emulator() -> AsyncIterator[Emulator]:
        """The account API emulator on a loopback port, for one test."""
        async with Emulator() as emulator:
            yield emulator

    @pytest_asyncio.fixture
    async def accountapi_key(accountapi_emulator: Emulator) -> str:
        """A key the emulator knows (default profile)."""
        return accountapi_emulator.add_key()

    @pytest_asyncio.fixture
    async def accountapi_client(
        accountapi_emulator: Emulator, accountapi_key: str, accountapi_clock: VirtualClock
    ) -> AsyncIterator[AccountClient]:
        """A client for ``accountapi_key`` on the emulator, with the virtual clock."""
        async with AccountClient(
            accountapi_key, base_url=accountapi_emulator.url, clock=accountapi_clock
        ) as client:
            yield client

    __all__ += ["accountapi_client", "accountapi_emulator", "accountapi_key"]
