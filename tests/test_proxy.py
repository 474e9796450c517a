"""proxy=, trust_env and netrc, against a real forwarding proxy and the emulator on loopback."""

from __future__ import annotations

import base64
import ssl
import traceback
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from proxyserver import CUT, DROP, GARBAGE, ForwardProxy, forward_proxy
from yarl import URL

from accountapi import (
    AccountAPIError,
    AccountClient,
    APIConnectionError,
    APIStatusError,
    BadGatewayError,
    ConfigurationError,
    SyncAccountClient,
)
from accountapi.testing import Emulator, VirtualClock

LOGIN = ("alice", "pr0xy-s3cret")
PROXY_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "NETRC")


@pytest.fixture(autouse=True)
def _no_env_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets: no developer proxy, and an empty home (no ~/.netrc)."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with forward_proxy() as p:
        yield p


@pytest.fixture
async def locked_proxy() -> AsyncIterator[ForwardProxy]:
    """A proxy that answers 407 unless the request carries LOGIN."""
    async with forward_proxy(login=LOGIN) as p:
        yield p


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def https_emulator(ca: trustme.CA) -> AsyncIterator[Emulator]:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    async with Emulator(ssl=server_ctx) as emu:
        yield emu


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_hidden(text: str, key: str | None = None) -> None:
    """Neither the proxy's password (in any form) nor the key is in ``text``."""
    assert LOGIN[1] not in text
    assert basic(*LOGIN).split()[1] not in text
    if key is not None:
        assert key not in text


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- through the proxy ----------------------------------------------------------------------


async def test_every_request_goes_through_the_proxy(
    emulator: Emulator, proxy: ForwardProxy
) -> None:
    """profile() and dismiss_notifications() are sent to the proxy in absolute form and
    forwarded; the emulator sees each once, with the key as its bearer token."""
    key = emulator.add_key({"balance_eur": "3.500000"})
    async with AccountClient(key, base_url=emulator.url, proxy=proxy.url) as client:
        profile = await client.account.profile()
        await client.account.dismiss_notifications()
    assert str(profile.balance_eur) == "3.500000"
    assert proxy.forwarded == 2
    assert proxy.request_lines[0] == f"GET {emulator.url}/v1/account/profile HTTP/1.1"
    assert proxy.request_lines[1].startswith(f"POST {emulator.url}/v1/")
    assert emulator.attempts(key) == 1
    assert emulator.attempts(key, None) == 2


async def test_a_yarl_url_works_too(emulator: Emulator, proxy: ForwardProxy) -> None:
    """proxy= takes a yarl.URL as well as a str."""
    key = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, proxy=URL(proxy.url)) as client:
        await client.account.profile()
    assert proxy.forwarded == 1


def test_the_sync_client_takes_a_proxy() -> None:
    """SyncAccountClient has the same parameter, checked the same way."""
    with SyncAccountClient(proxy=f"http://alice:{LOGIN[1]}@127.0.0.1:3128") as client:
        assert_hidden(repr(client))


async def test_the_proxy_login_is_sent_and_never_shown(
    emulator: Emulator, locked_proxy: ForwardProxy
) -> None:
    """user:password@ in the proxy URL becomes Proxy-Authorization for the proxy alone:
    the emulator never receives it, and no repr shows the password."""
    key = emulator.add_key()
    async with AccountClient(
        key, base_url=emulator.url, proxy=locked_proxy.url_with_login()
    ) as client:
        await client.account.profile()
        assert_hidden(repr(client) + repr(client._transport), key)
        assert f"127.0.0.1:{locked_proxy.port}" in repr(client._transport)
    assert locked_proxy.proxy_authorizations == [basic(*LOGIN)]
    assert emulator.attempts(key) == 1
    (record,) = emulator.records
    assert "Proxy-Authorization" not in record.headers


async def test_a_wrong_proxy_login_is_the_proxys_407_without_the_password(
    emulator: Emulator, locked_proxy: ForwardProxy
) -> None:
    """The proxy's own 407 is a status like any other: not retried, nothing reached the service."""
    key = emulator.add_key()
    url = str(URL(locked_proxy.url).with_user("alice").with_password("wrong-" + LOGIN[1]))
    async with AccountClient(key, base_url=emulator.url, proxy=url, clock=VirtualClock()) as c:
        with pytest.raises(APIStatusError) as info:
            await c.account.profile()
    assert info.value.status == 407
    assert info.value.attempts == 1
    assert_hidden(str(info.value) + repr(info.value), key)
    assert "wrong-" not in str(info.value)
    assert emulator.attempts(key) == 0


async def test_https_goes_through_a_connect_tunnel(
    https_emulator: Emulator, locked_proxy: ForwardProxy, ca: trustme.CA
) -> None:
    """An https:// service is reached by CONNECT through the proxy, TLS verified end to
    end; the proxy sees the login and the host, never the key."""
    key = https_emulator.add_key({"balance_eur": "9.000000"})
    async with AccountClient(
        key,
        base_url=https_emulator.url,
        proxy=locked_proxy.url_with_login(),
        ssl=trusting(ca),
    ) as client:
        profile = await client.account.profile()
        await client.account.profile()  # the tunnel is pooled: one CONNECT for both
    assert str(profile.balance_eur) == "9.000000"
    port = URL(https_emulator.url).port
    assert locked_proxy.request_lines == [f"CONNECT 127.0.0.1:{port} HTTP/1.1"]
    assert locked_proxy.proxy_authorizations == [basic(*LOGIN)]
    assert key.encode() not in b"".join(locked_proxy.heads)
    assert https_emulator.attempts(key) == 2


async def test_a_tunnel_to_a_certificate_for_another_name_is_refused(
    ca: trustme.CA, proxy: ForwardProxy
) -> None:
    """Through the proxy, TLS still checks the host name: a trusted CA's certificate for
    another name is an APIConnectionError, not retried, the key never sent."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("service.example").configure_cert(server_ctx)
    async with Emulator(ssl=server_ctx) as emu:
        key = emu.add_key()
        clock = VirtualClock()
        async with AccountClient(
            key, base_url=emu.url, proxy=proxy.url, ssl=trusting(ca), clock=clock
        ) as client:
            with pytest.raises(APIConnectionError, match="TLS") as info:
                await client.account.profile()
        assert info.value.retryable is False
        assert info.value.attempts == 1
        assert emu.attempts(key) == 0


# -- a proxy that is down or misbehaves -------------------------------------------------------


async def test_a_dead_proxy_is_a_connection_error_retried_as_never_sent(
    emulator: Emulator,
) -> None:
    """Nothing listens at the proxy's port: APIConnectionError(request_sent=False) naming
    the proxy without its password, retried (GET and POST alike: nothing left)."""
    key = emulator.add_key()
    url = f"http://alice:{LOGIN[1]}@127.0.0.1:{closed_port()}"
    clock = VirtualClock()
    async with AccountClient(
        key, base_url=emulator.url, proxy=url, clock=clock, max_retries=2
    ) as client:
        with pytest.raises(APIConnectionError) as get:
            await client.account.profile()
        with pytest.raises(APIConnectionError) as post:
            await client.account.dismiss_notifications()
    for info in (get, post):
        assert info.value.request_sent is False
        assert info.value.attempts == 3
        assert "cannot connect to the proxy http://127.0.0.1:" in str(info.value)
        assert_hidden(str(info.value) + repr(info.value), key)
    assert len(clock.sleeps) == 4
    assert emulator.attempts(key, None) == 0


async def test_a_proxy_dropping_a_get_before_answering_is_retried(
    emulator: Emulator, proxy: ForwardProxy
) -> None:
    """The proxy closes a forwarded GET before any byte: retried, and the retry succeeds."""
    key = emulator.add_key()
    proxy.script([DROP])
    async with AccountClient(
        key, base_url=emulator.url, proxy=proxy.url, clock=VirtualClock()
    ) as c:
        await c.account.profile()
    assert len(proxy.request_lines) == 2
    assert emulator.attempts(key) == 1


async def test_a_proxy_dropping_a_dismiss_is_not_sent_again(
    emulator: Emulator, proxy: ForwardProxy
) -> None:
    """A POST the proxy took and dropped may have been forwarded: raised after one attempt."""
    key = emulator.add_key()
    proxy.script([DROP])
    async with AccountClient(
        key, base_url=emulator.url, proxy=proxy.url, clock=VirtualClock()
    ) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.account.dismiss_notifications()
    assert info.value.request_sent is True
    assert info.value.attempts == 1
    assert len(proxy.request_lines) == 1


async def test_a_proxys_own_502_is_a_status_retried_like_the_services(
    emulator: Emulator, proxy: ForwardProxy
) -> None:
    """A 502 from the proxy itself is BadGatewayError, retried; the retry gets through."""
    key = emulator.add_key()
    proxy.script([502])
    clock = VirtualClock()
    async with AccountClient(key, base_url=emulator.url, proxy=proxy.url, clock=clock) as c:
        await c.account.profile()
    assert len(clock.sleeps) == 1
    assert emulator.attempts(key) == 1


@pytest.mark.parametrize("status", [502, 503])
async def test_a_connect_answered_502_or_503_is_a_status_retried(
    https_emulator: Emulator, proxy: ForwardProxy, ca: trustme.CA, status: int
) -> None:
    """The proxy refusing the CONNECT with 502/503 is that status, retried like the service's."""
    key = https_emulator.add_key()
    proxy.script([status])
    clock = VirtualClock()
    async with AccountClient(
        key, base_url=https_emulator.url, proxy=proxy.url, ssl=trusting(ca), clock=clock
    ) as client:
        await client.account.profile()
    assert len(clock.sleeps) == 1
    assert len(proxy.request_lines) == 2
    assert https_emulator.attempts(key) == 1


async def test_a_connect_answered_502_every_time_ends_as_bad_gateway(
    https_emulator: Emulator, proxy: ForwardProxy, ca: trustme.CA
) -> None:
    """Retries give up with the proxy's status as the error, attempts counted."""
    key = https_emulator.add_key()
    proxy.script([502] * 3)
    async with AccountClient(
        key,
        base_url=https_emulator.url,
        proxy=proxy.url,
        ssl=trusting(ca),
        clock=VirtualClock(),
        max_retries=2,
    ) as client:
        with pytest.raises(BadGatewayError) as info:
            await client.account.profile()
    assert info.value.attempts == 3
    assert https_emulator.attempts(key) == 0


@pytest.mark.parametrize("method", ["profile", "dismiss_notifications"])
async def test_a_connect_dropped_by_the_proxy_is_never_sent_and_retried(
    https_emulator: Emulator, proxy: ForwardProxy, ca: trustme.CA, method: str
) -> None:
    """The proxy closing the CONNECT without an answer: the request never left the
    client, so GET and POST alike are retried, and the retry gets through."""
    key = https_emulator.add_key()
    proxy.script([DROP])
    clock = VirtualClock()
    async with AccountClient(
        key, base_url=https_emulator.url, proxy=proxy.url, ssl=trusting(ca), clock=clock
    ) as client:
        await getattr(client.account, method)()
    assert len(clock.sleeps) == 1
    assert len(proxy.request_lines) == 2
    assert https_emulator.attempts(key, None) == 1


async def test_a_connect_answered_with_garbage_is_not_retried(
    https_emulator: Emulator, proxy: ForwardProxy, ca: trustme.CA
) -> None:
    """Something that is not HTTP at the proxy's port: a typed error at once, naming the proxy."""
    key = https_emulator.add_key()
    proxy.script([GARBAGE])
    async with AccountClient(
        key,
        base_url=https_emulator.url,
        proxy=f"http://alice:{LOGIN[1]}@127.0.0.1:{proxy.port}",
        ssl=trusting(ca),
        clock=VirtualClock(),
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.account.profile()
    assert info.value.request_sent is False
    assert info.value.retryable is False
    assert info.value.attempts == 1
    assert f"proxy http://127.0.0.1:{proxy.port}" in str(info.value)
    assert_hidden(str(info.value) + repr(info.value), key)


@pytest.mark.parametrize("action", [GARBAGE, CUT])
async def test_a_forwarded_answer_garbled_or_cut_is_a_connection_error(
    emulator: Emulator, proxy: ForwardProxy, action: str
) -> None:
    """Garbage instead of the answer, or the answer cut in the middle: APIConnectionError,
    not retried (the service may have acted), no key or password in it."""
    key = emulator.add_key()
    proxy.script([action])
    url = f"http://alice:{LOGIN[1]}@127.0.0.1:{proxy.port}"
    async with AccountClient(key, base_url=emulator.url, proxy=url, clock=VirtualClock()) as c:
        with pytest.raises(APIConnectionError) as info:
            await c.account.profile()
    assert info.value.attempts == 1
    assert info.value.request_sent is True
    assert_hidden(str(info.value) + repr(info.value), key)


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "socks5://127.0.0.1:1080",
        "https://127.0.0.1:3128",
        "proxy.internal:3128",
        "http://",
        "http://127.0.0.1:99999",
        "http://alice:pr0xy-s3cret@127.0.0.1:3128/some/path",
        "http://alice:pr0xy-s3cret@bad host:3128",
        "http://alice:pr0xy-s3cret@[::1:3128",
    ],
)
def test_a_bad_proxy_url_is_a_configuration_error_without_the_password(url: str) -> None:
    """Checked when the client is built, for both clients; the password never in the message."""
    for make in (AccountClient, SyncAccountClient):
        with pytest.raises(ConfigurationError, match="proxy") as info:
            make("dpct_" + "a" * 32, proxy=url)
        assert_hidden(str(info.value) + repr(info.value))


def test_a_proxy_of_another_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"str or yarl\.URL"):
        AccountClient(proxy=3128)  # type: ignore[arg-type]


async def test_proxy_with_a_session_is_refused(emulator: Emulator) -> None:
    """proxy= configures the client's own session: with session= it is a ConfigurationError."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigurationError, match="proxy"):
            AccountClient(base_url=emulator.url, session=session, proxy="http://127.0.0.1:3128")


async def test_a_session_with_its_own_login_is_refused_at_construction(
    emulator: Emulator,
) -> None:
    """A session built with auth= would send its login instead of the key: refused, saying why."""
    with pytest.warns(DeprecationWarning, match="auth"):
        session = aiohttp.ClientSession(auth=aiohttp.BasicAuth("user", "pass"))
    async with session:
        with pytest.raises(ConfigurationError, match="auth=") as info:
            AccountClient("dpct_" + "a" * 32, base_url=emulator.url, session=session)
    assert "dpct_" not in str(info.value)


# -- trust_env and netrc ----------------------------------------------------------------------


def write_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *entries: str) -> None:
    path = tmp_path / "netrc"
    path.write_text("".join(entries))
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))


async def test_a_netrc_entry_for_the_service_does_not_replace_the_key(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trust_env=True with a netrc login for the service's host: the SDK's bearer header
    wins (aiohttp would otherwise refuse every call with a raw ValueError)."""
    write_netrc(tmp_path, monkeypatch, "machine 127.0.0.1 login someone password other\n")
    key = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, trust_env=True) as client:
        await client.account.profile()
    assert emulator.attempts(key) == 1  # authorized by Bearer <key>


async def test_trust_env_takes_the_env_proxy_and_its_netrc_login(
    emulator: Emulator,
    locked_proxy: ForwardProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$HTTP_PROXY names the proxy, netrc its login; the same entry's host is the service's,
    whose requests still carry the key."""
    write_netrc(tmp_path, monkeypatch, f"machine 127.0.0.1 login {LOGIN[0]} password {LOGIN[1]}\n")
    monkeypatch.setenv("HTTP_PROXY", locked_proxy.url)
    key = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, trust_env=True) as client:
        await client.account.profile()
        assert_hidden(repr(client._transport), key)
    assert locked_proxy.proxy_authorizations == [basic(*LOGIN)]
    assert emulator.attempts(key) == 1


async def test_no_proxy_sends_trust_env_requests_direct(
    emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host in $NO_PROXY is reached directly, the env proxy unused."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    key = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, trust_env=True) as client:
        await client.account.profile()
    assert proxy.connections == 0
    assert emulator.attempts(key) == 1


async def test_proxy_beats_the_env_proxy(
    emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """proxy= wins over trust_env's $HTTP_PROXY (here a dead port)."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    key = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, trust_env=True, proxy=proxy.url) as client:
        await client.account.profile()
    assert proxy.forwarded == 1


def test_a_bad_env_proxy_is_a_configuration_error_with_trust_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An env proxy aiohttp cannot use is refused when the client is built, password hidden."""
    monkeypatch.setenv("HTTPS_PROXY", f"socks5://alice:{LOGIN[1]}@127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match="https_proxy") as info:
        AccountClient("dpct_" + "a" * 32, trust_env=True)
    assert_hidden(str(info.value))


async def test_a_session_trusting_a_netrc_login_fails_clearly(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session passed in with trust_env=True meets a netrc entry for the service: a
    ConfigurationError saying what to do, not aiohttp's raw ValueError; no key in it."""
    write_netrc(tmp_path, monkeypatch, "machine 127.0.0.1 login someone password other\n")
    key = emulator.add_key()
    async with aiohttp.ClientSession(trust_env=True) as session:
        client = AccountClient(key, base_url=emulator.url, session=session)
        with pytest.raises(ConfigurationError, match="netrc") as info:
            await client.account.profile()
        await client.aclose()
    error: AccountAPIError = info.value
    assert key not in str(error) + repr(error)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert emulator.attempts(key, include_unauthorized=True) == 0


def test_no_warning_is_raised_when_building_a_proxied_client() -> None:
    """aiohttp's deprecated proxy_auth= is not used: building and repr warn nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client = AccountClient(proxy=f"http://alice:{LOGIN[1]}@127.0.0.1:3128")
        assert_hidden(repr(client))


def test_translate_masks_the_proxy_password_whatever_aiohttp_says() -> None:
    """Belt and braces: an aiohttp message quoting the proxy URL (or its Basic token) is
    masked before it becomes the SDK's error."""
    from accountapi._http._proxy import check_proxy_url
    from accountapi._http._transport import translate

    proxy = check_proxy_url(f"http://alice:{LOGIN[1]}@127.0.0.1:3128")
    for quoted in (str(proxy.url), basic(*LOGIN)):
        error = translate(aiohttp.ClientPayloadError(f"broken near {quoted}"), "GET", proxy)
        assert_hidden(str(error) + repr(error) + str(error.args))
        assert "***" in str(error)


@pytest.mark.parametrize("make", [AccountClient, SyncAccountClient])
def test_no_frame_of_a_construction_error_shows_the_proxy_password(make: Any) -> None:
    """A client whose construction fails after its proxy was given (a bad base URL here)
    leaves the proxy's password in no frame's locals: error trackers record them."""
    with pytest.raises(ConfigurationError) as info:
        make(proxy="http://alice:pr0xy-s3cret-pw@127.0.0.1:3128", base_url="ftp://nope")
    rendered = traceback.TracebackException.from_exception(info.value, capture_locals=True)
    frames = [frame for frame in rendered.stack if frame.name == "__init__"]
    assert frames  # the client's constructor frames are there, with their locals
    shown = " ".join(str(frame.locals) for frame in rendered.stack) + str(info.value)
    assert "pr0xy-s3cret-pw" not in shown
