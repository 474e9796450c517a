"""The client's lifecycle and configuration: env fallbacks, sessions, loops, timeouts."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest

from accountapi import (
    NOT_GIVEN,
    AccountClient,
    ClientStateError,
    ConfigurationError,
    Limits,
    RetryPolicy,
    Timeout,
)
from accountapi._config import DEFAULT_TIMEOUT, NO_TIMEOUT
from accountapi.testing import Emulator


def test_construction_needs_no_event_loop() -> None:
    """A client can be built at import time, outside any running loop."""
    client = AccountClient("dpct_" + "a" * 32)
    assert not client.closed
    assert client.base_url == "https://api.depicta.ai"


def test_key_and_url_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key: ACCOUNTAPI_API_KEY then DEPICTA_API_KEY; base_url: ACCOUNTAPI_BASE_URL then DEPICTA_API_URL."""
    monkeypatch.setenv("DEPICTA_API_KEY", "dpct_depicta_key_0001")
    monkeypatch.setenv("DEPICTA_API_URL", "https://depicta.example")
    client = AccountClient()
    assert "0001" in repr(client)
    assert client.base_url == "https://depicta.example"
    monkeypatch.setenv("ACCOUNTAPI_API_KEY", "dpct_accountapi_key_0002")
    monkeypatch.setenv("ACCOUNTAPI_BASE_URL", "https://accountapi.example/")
    client = AccountClient()
    assert "0002" in repr(client)
    assert client.base_url == "https://accountapi.example"
    assert "0003" in repr(AccountClient("dpct_explicit_key_0003"))


async def test_calls_without_any_key_fail_clearly(emulator: Emulator) -> None:
    """No key anywhere is a ConfigurationError at call time, naming the variables to set."""
    async with AccountClient(base_url=emulator.url) as client:
        with pytest.raises(ConfigurationError, match="ACCOUNTAPI_API_KEY"):
            await client.account.profile()
    assert emulator.records == []


async def test_per_call_key_uses_the_same_pool(emulator: Emulator) -> None:
    """api_key= per call reaches the service with that key, on the client's one session."""
    a, b = (
        emulator.add_key({"balance_eur": "1.000000"}),
        emulator.add_key({"balance_eur": "2.000000"}),
    )
    async with AccountClient(a, base_url=emulator.url) as client:
        pa = await client.account.profile()
        pb = await client.account.profile(api_key=b)
    assert (str(pa.balance_eur), str(pb.balance_eur)) == ("1.000000", "2.000000")


async def test_dismiss_clears_the_notice(
    emulator: Emulator, key: str, client: AccountClient
) -> None:
    """dismiss_notifications() makes the next profile report no pending notice."""
    assert (await client.account.profile()).pending_credit_notice is True
    await client.account.dismiss_notifications()
    assert (await client.account.profile()).pending_credit_notice is False


async def test_dismiss_accepts_200_with_any_body() -> None:
    """A 200 with an undocumented body is success too."""
    async with Emulator(dismiss_status=200) as emu:
        key = emu.add_key()
        async with AccountClient(key, base_url=emu.url) as client:
            await client.account.dismiss_notifications()
        assert emu.profile(key)["pending_credit_notice"] is False


async def test_user_agent_header(emulator: Emulator, key: str, client: AccountClient) -> None:
    """Requests name the SDK and its version."""
    await client.account.profile()
    headers = emulator.records[0].headers
    assert headers["User-Agent"].startswith("accountapi-python/")


async def test_caller_session_is_used_and_left_open(emulator: Emulator, key: str) -> None:
    """A session passed in carries the requests and is not closed by the SDK."""
    async with aiohttp.ClientSession() as session:
        async with AccountClient(key, base_url=emulator.url, session=session) as client:
            await client.account.profile()
        assert not session.closed
        async with session.get(f"{emulator.url}/v1/account/profile") as resp:
            assert resp.status == 401  # the session still works, and carries no key of ours
    assert emulator.attempts(key) == 1


async def test_owned_session_closes_on_exit(emulator: Emulator, key: str) -> None:
    """Leaving `async with` closes the pool; a closed client refuses further calls clearly."""
    async with AccountClient(key, base_url=emulator.url) as client:
        await client.account.profile()
    assert client.closed
    with pytest.raises(ClientStateError, match="closed"):
        await client.account.profile()
    await client.aclose()  # idempotent


async def test_aclose_without_use_is_fine() -> None:
    """Closing a client that never sent anything does nothing and warns nothing."""
    client = AccountClient("dpct_" + "b" * 32)
    await client.aclose()
    assert client.closed


def test_second_event_loop_gets_a_clear_error() -> None:
    """A client used in one loop raises ClientStateError in another, without hanging."""
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    emulator = Emulator()
    try:
        first.run_until_complete(emulator.start())
        key = emulator.add_key()
        client = AccountClient(key, base_url=emulator.url)
        first.run_until_complete(client.account.profile())
        with pytest.raises(ClientStateError, match="another event loop"):
            second.run_until_complete(client.account.profile())
        with pytest.raises(ClientStateError, match="event loop it was used in"):
            second.run_until_complete(client.aclose())
        first.run_until_complete(client.aclose())
        first.run_until_complete(emulator.close())
    finally:
        first.close()
        second.close()


def test_client_reusable_across_asyncio_run_after_close() -> None:
    """asyncio.run twice with a fresh client each time works (the documented pattern)."""

    async def once() -> str:
        async with Emulator() as emu:
            key = emu.add_key({"balance_eur": "3.300000"})
            async with AccountClient(key, base_url=emu.url) as client:
                return str((await client.account.profile()).balance_eur)

    assert asyncio.run(once()) == "3.300000"
    assert asyncio.run(once()) == "3.300000"


@pytest.mark.parametrize(
    "url",
    [
        "http://api.depicta.ai",
        "http://10.0.0.1:8080",
        "ftp://api.depicta.ai",
        "https://",
        "https://u:p@host",
        "not a url",
    ],
)
def test_bad_base_urls_are_refused(url: str) -> None:
    """Plain http to a non-loopback host, other schemes, embedded credentials and junk are refused."""
    with pytest.raises(ConfigurationError):
        AccountClient("dpct_" + "c" * 32, base_url=url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9", "http://127.5.6.7"]
)
def test_loopback_http_is_allowed(url: str) -> None:
    """Plain http is fine for loopback hosts, so the emulator works."""
    assert AccountClient("dpct_" + "c" * 32, base_url=url).base_url == url


def test_insecure_http_only_when_asked() -> None:
    """allow_insecure_http=True opts in to plain http for another host."""
    client = AccountClient(
        "dpct_" + "c" * 32, base_url="http://intranet.example", allow_insecure_http=True
    )
    assert client.base_url == "http://intranet.example"


def test_tls_verification_cannot_be_switched_off() -> None:
    """ssl= takes an SSLContext only; False (aiohttp's 'verify off') is refused."""
    with pytest.raises(ConfigurationError, match="SSLContext"):
        AccountClient("dpct_" + "c" * 32, ssl=False)  # type: ignore[arg-type]
    AccountClient("dpct_" + "c" * 32, ssl=ssl.create_default_context())


async def test_ssl_with_a_caller_session_is_refused() -> None:
    """TLS settings belong on the caller's session when one is passed."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigurationError):
            AccountClient("dpct_" + "c" * 32, session=session, ssl=ssl.create_default_context())


def test_timeout_forms() -> None:
    """NOT_GIVEN is the default; None is no limit at all; a number is the whole call's deadline."""
    assert Timeout.coerce(NOT_GIVEN) is DEFAULT_TIMEOUT
    assert Timeout.coerce(None) == NO_TIMEOUT
    assert Timeout.coerce(2.5) == Timeout(total=2.5)
    assert AccountClient("dpct_" + "d" * 32, timeout=None).timeout.total is None
    assert DEFAULT_TIMEOUT.connect is not None
    assert DEFAULT_TIMEOUT.read is not None
    assert DEFAULT_TIMEOUT.total is not None


@pytest.mark.parametrize(
    "build",
    [
        lambda: Timeout(total=-1),
        lambda: Timeout(read=float("inf")),
        lambda: Timeout(connect="5"),  # type: ignore[arg-type]
        lambda: AccountClient("dpct_" + "e" * 32, max_retries=True),
        lambda: RetryPolicy(max_wait=0),
        lambda: Limits(per_key=0),
        lambda: Limits(max_response_bytes=0),
        lambda: AccountClient("dpct_" + "e" * 32, max_retries=-2),
        lambda: AccountClient("dpct_" + "e" * 32, retry="often"),  # type: ignore[arg-type]
    ],
)
def test_bad_options_are_configuration_errors(build: object) -> None:
    """Invalid options raise ConfigurationError (also a ValueError), never a raw TypeError."""
    with pytest.raises(ConfigurationError):
        build()  # type: ignore[operator]


async def test_response_over_the_size_cap_is_refused(emulator: Emulator, key: str) -> None:
    """A body over Limits.max_response_bytes is refused as a validation error, unread."""
    from accountapi import APIResponseValidationError
    from accountapi.testing import Fault

    emulator.script(key, [Fault.large_body(300_000)])
    async with AccountClient(
        key, base_url=emulator.url, limits=Limits(max_response_bytes=100_000)
    ) as client:
        with pytest.raises(APIResponseValidationError, match="max_response_bytes"):
            await client.account.profile()
        emulator.script(key, [Fault.large_body(50_000)])
        assert (await client.account.profile()).email  # under the cap: decoded normally
