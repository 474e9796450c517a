"""Shared fixtures: a real emulator on a loopback port and a client pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from accountapi import AccountClient
from accountapi.testing import Emulator, VirtualClock

ENV_VARS = ("ACCOUNTAPI_API_KEY", "DEPICTA_API_KEY", "ACCOUNTAPI_BASE_URL", "DEPICTA_API_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's real key or base URL from the environment."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with Emulator() as emu:
        yield emu


@pytest.fixture
def key(emulator: Emulator) -> str:
    return emulator.add_key()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def client(emulator: Emulator, key: str, clock: VirtualClock) -> AsyncIterator[AccountClient]:
    """A client on the emulator whose retry waits are virtual (recorded, not slept)."""
    async with AccountClient(key, base_url=emulator.url, clock=clock) as c:
        yield c
