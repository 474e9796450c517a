"""TLS: verification is always on; a private CA is trusted only through an SSLContext."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import pytest
import trustme

from accountapi import AccountClient, APIConnectionError, ConfigurationError, SyncAccountClient
from accountapi.testing import Emulator, VirtualClock


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_emulator(ca: trustme.CA) -> AsyncIterator[Emulator]:
    """The emulator over HTTPS with a certificate from a throwaway CA."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    async with Emulator(ssl=server_ctx) as emu:
        yield emu


async def test_untrusted_certificate_is_refused(https_emulator: Emulator) -> None:
    """The default client rejects a certificate it cannot verify, and does not retry that."""
    key = https_emulator.add_key()
    clock = VirtualClock()
    async with AccountClient(key, base_url=https_emulator.url, clock=clock) as client:
        with pytest.raises(APIConnectionError, match="TLS") as info:
            await client.account.profile()
    assert info.value.retryable is False
    assert info.value.attempts == 1
    assert clock.sleeps == []
    assert https_emulator.attempts(key) == 0  # nothing, the key included, was sent


async def test_context_trusting_the_ca_succeeds(https_emulator: Emulator, ca: trustme.CA) -> None:
    """A client given an SSLContext that trusts the CA talks to the service normally."""
    key = https_emulator.add_key({"balance_eur": "4.200000"})
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with AccountClient(key, base_url=https_emulator.url, ssl=client_ctx) as client:
        profile = await client.account.profile()
    assert str(profile.balance_eur) == "4.200000"
    assert https_emulator.attempts(key) == 1


async def test_a_context_without_verification_is_still_checked(https_emulator: Emulator) -> None:
    """There is no switch to turn verification off: the SDK takes only SSLContext objects,
    and the default context verifies."""
    key = https_emulator.add_key()
    async with AccountClient(
        key, base_url=https_emulator.url, ssl=ssl.create_default_context()
    ) as client:
        with pytest.raises(APIConnectionError, match="TLS"):
            await client.account.profile()


@pytest.mark.parametrize(
    "make",
    [
        ssl._create_unverified_context,
        lambda: _without_hostname_check(ssl.create_default_context()),
    ],
    ids=["unverified", "no-hostname-check"],
)
async def test_a_context_that_does_not_verify_is_refused(
    https_emulator: Emulator, make: object
) -> None:
    """An SSLContext that skips the certificate or the host name check is refused when
    the client is built, before any key is sent anywhere."""
    assert callable(make)
    key = https_emulator.add_key()
    with pytest.raises(ConfigurationError, match="must verify"):
        AccountClient(key, base_url=https_emulator.url, ssl=make())
    with pytest.raises(ConfigurationError, match="must verify"):
        SyncAccountClient(key, base_url=https_emulator.url, ssl=make())
    assert https_emulator.attempts(key) == 0


def _without_hostname_check(context: ssl.SSLContext) -> ssl.SSLContext:
    context.check_hostname = False  # verify_mode stays CERT_REQUIRED
    return context


async def test_a_trusted_cas_certificate_for_another_name_is_refused(ca: trustme.CA) -> None:
    """A certificate from a CA the context trusts, but for another host name: a typed
    APIConnectionError, not retried, the key never sent."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("service.example").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with Emulator(ssl=server_ctx) as emu:
        key = emu.add_key()
        clock = VirtualClock()
        async with AccountClient(key, base_url=emu.url, ssl=client_ctx, clock=clock) as client:
            with pytest.raises(APIConnectionError, match="TLS") as info:
                await client.account.profile()
        assert info.value.retryable is False
        assert info.value.attempts == 1
        assert clock.sleeps == []
        assert emu.attempts(key) == 0
