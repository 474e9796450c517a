"""Secrets stay secret, credentials stay with the service, bad keys never reach a socket."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import traceback

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rawserver import raw_server, response

from accountapi import (
    AccountAPIError,
    AccountClient,
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadGatewayError,
    MalformedAPIKeyError,
    RateLimitError,
    RetryEvent,
    ServiceUnavailableError,
    Timeout,
    UnexpectedRedirectError,
    key_hint,
)
from accountapi.testing import Emulator, Fault, VirtualClock

CANARY = "dpct_CANARYcanary0123456789SECRETxyz"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def assert_no_canary(exc: BaseException) -> None:
    text = "".join(traceback.format_exception(exc))
    for link in _chain(exc):
        text += repr(link) + str(link) + repr(getattr(link, "args", ""))
    assert CANARY not in text
    assert CANARY[5:] not in text


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "dpct_has space",
        "dpct_crlf\r\nX-Injected: 1",
        "dpct_tab\tkey",
        "dpct_nön_ascii",
        "dpct_\x00nul",
        "d" * 600,
    ],
)
async def test_malformed_keys_are_rejected_before_any_request(emulator: Emulator, bad: str) -> None:
    """Whitespace, CR/LF, control, non-ASCII and oversized keys fail before a socket is touched."""
    async with AccountClient(base_url=emulator.url) as client:
        with pytest.raises(MalformedAPIKeyError) as info:
            await client.account.profile(api_key=bad)
    assert emulator.records == []
    if bad:
        assert bad not in str(info.value)
    with pytest.raises(MalformedAPIKeyError):
        AccountClient(bad)


def test_key_hint_shows_prefix_and_last_four_only() -> None:
    """The hint is 'dpct_…' plus four characters; short keys reveal nothing."""
    assert key_hint(CANARY) == "dpct_…Txyz"
    assert key_hint("dpct_short") == "…"


@settings(max_examples=2000, deadline=None)
@given(key=st.from_regex(r"[!-~]{1,40}", fullmatch=True))
@example(key="abcdefgh_xyz")  # a prefix of 9 and the last 4 would have been all 12
@example(key="dpct_abcdefgh")
@example(key="dpct_abcdefghi")
def test_a_hint_keeps_at_least_eight_characters_of_any_key_hidden(key: str) -> None:
    """Whatever its length and shape, a key's hint shows at most all but 8 of its
    characters: the prefix is dropped when showing it would leave fewer hidden."""
    hint = key_hint(key)
    shown = hint.replace("…", "")
    assert len(shown) <= max(len(key) - 8, 0)
    head, _, tail = hint.partition("…")
    assert key.startswith(head)
    assert key.endswith(tail)


def test_a_short_key_with_a_prefix_loses_the_prefix_in_its_hint() -> None:
    assert key_hint("abcdefgh_xyz") == "…_xyz"
    assert key_hint("dpct_abcdefg") == "…defg"  # 12: the prefix would leave 3 hidden
    assert key_hint("dpct_abcdefghijk") == "…hijk"  # 16: it would leave 7
    assert key_hint("dpct_abcdefghijkl") == "dpct_…ijkl"  # 17: it leaves 8


async def test_canary_key_never_leaks(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    """Through every status and socket fault and a dead port, the key stays out of reprs,
    messages, exception chains, tracebacks and DEBUG logs (aiohttp's included)."""
    caplog.set_level(logging.DEBUG)
    emulator.add_key(key=CANARY)
    events: list[RetryEvent] = []
    clock = VirtualClock()
    async with AccountClient(
        CANARY,
        base_url=emulator.url,
        clock=clock,
        on_retry=events.append,
        timeout=Timeout(read=0.2, total=10),
    ) as client:
        assert CANARY not in repr(client)
        assert CANARY not in repr(client.account)
        await client.account.profile()
        errors: list[AccountAPIError] = []
        every_fault: list[tuple[list[Fault], type[AccountAPIError]]] = [
            ([Fault.status(503)] * 5, ServiceUnavailableError),
            ([Fault.status(401)], AuthenticationError),
            ([Fault.body(b'{"user": 1}')], APIResponseValidationError),
            ([Fault.body(b"not json")], APIResponseValidationError),
            ([Fault.html(502)] * 5, BadGatewayError),
            ([Fault.empty(503)] * 5, ServiceUnavailableError),
            ([Fault.drop()] * 5, APIConnectionError),
            ([Fault.reset_mid_body()], APIConnectionError),
            ([Fault.truncated()], APIConnectionError),
            ([Fault.stall_body(1)], APITimeoutError),
            ([Fault.large_body(2 << 20)], APIResponseValidationError),
            ([Fault.redirect("https://elsewhere.example/")], UnexpectedRedirectError),
            # Last: a long Retry-After cools the key down for the rest of this client's life.
            ([Fault.status(429, retry_after=999)], RateLimitError),
        ]
        for script, expected in every_fault:
            emulator.script(CANARY, script)
            with pytest.raises(expected) as info:
                await client.account.profile()
            errors.append(info.value)
        assert emulator.attempts(CANARY) == 1 + 5 + 1 + 1 + 1 + 5 + 5 + 5 + 1 + 1 + 1 + 1 + 1 + 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    async with AccountClient(CANARY, base_url=dead, clock=clock, max_retries=1) as client:
        with pytest.raises(APIConnectionError) as conn:
            await client.account.profile()
        errors.append(conn.value)
    for err in errors:
        assert_no_canary(err)
        assert err.key_hint == "dpct_…Txyz"
    for event in events:
        assert CANARY not in repr(event)
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert caplog.records  # retries were logged
    assert CANARY not in logged
    assert CANARY not in caplog.text


async def test_redirect_to_another_host_is_not_followed() -> None:
    """A 302 to another server is an error; that server never sees the request or the key."""
    async with Emulator() as service, Emulator() as elsewhere:
        key = service.add_key(fault=Fault.redirect("placeholder"))
        service.script(key, [Fault.redirect(f"{elsewhere.url}/v1/account/profile")])
        async with AccountClient(key, base_url=service.url) as client:
            with pytest.raises(UnexpectedRedirectError):
                await client.account.profile()
        assert elsewhere.records == []
        assert service.attempts(key) == 1


@pytest.mark.parametrize("status", [301, 307, 308])
async def test_no_redirect_status_is_followed(emulator: Emulator, key: str, status: int) -> None:
    """Permanent and temporary redirects alike are raised, not followed."""
    emulator.script(key, [Fault.redirect(f"{emulator.url}/v1/account/profile", status=status)])
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(UnexpectedRedirectError) as info:
            await client.account.profile()
    assert info.value.status == status
    assert emulator.attempts(key) == 1


async def test_environment_proxies_ignored_unless_trusted(
    emulator: Emulator, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is ignored by default and used only with trust_env=True."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("http_proxy", dead_proxy)
    async with AccountClient(key, base_url=emulator.url) as client:
        await client.account.profile()
    async with AccountClient(key, base_url=emulator.url, trust_env=True, max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            await client.account.profile()
    assert emulator.attempts(key) == 1


async def test_a_cookie_set_for_one_key_never_reaches_another(emulator: Emulator) -> None:
    """One session serves every key: the client keeps no cookies, so none crosses keys."""
    first, second = emulator.add_key(), emulator.add_key()
    emulator.script(first, [Fault.status(401, headers={"Set-Cookie": "tenant=first; Path=/"})])
    # "localhost", not 127.0.0.1: aiohttp's default jar would drop cookies from an IP anyway.
    base_url = emulator.url.replace("127.0.0.1", "localhost")
    async with AccountClient(base_url=base_url) as client:
        with pytest.raises(AuthenticationError):
            await client.account.profile(api_key=first)
        await client.account.profile(api_key=second)
        await client.account.profile(api_key=first)
    cookie_headers = [r.headers.get("Cookie") for r in emulator.records]
    assert len(cookie_headers) == 3
    assert cookie_headers == [None, None, None]


@pytest.mark.parametrize("status", [401, 503])
async def test_a_server_that_echoes_the_key_does_not_put_it_into_the_error(status: int) -> None:
    """A hostile or careless server repeats the key it was sent in its error message,
    details and a header: the SDK's exception (message, details, headers, body excerpt,
    str, repr) carries the hint instead, after retries too; nothing of the key remains."""
    secret = "dpct_ECHOechoECHOecho0123456789abc"

    async def echo(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sent = next(
            line.split(b" ", 2)[2].decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"authorization:")
        )
        body = json.dumps(
            {
                "error": {
                    "code": "auth_invalid",
                    "message": f"invalid API key {sent}",
                    "details": {"key": sent},
                }
            }
        ).encode()
        writer.write(response(status, body, {"X-Echo": f"key={sent}"}, reason="Nope"))
        await writer.drain()

    async with (
        raw_server(echo) as server,
        AccountClient(secret, base_url=server.url, clock=VirtualClock()) as client,
    ):
        with pytest.raises(APIStatusError) as info:
            await client.account.profile()
    exc = info.value
    assert exc.status == status
    assert server.requests == (1 if status == 401 else 5)  # the 503 went through its retries
    rendered = "\n".join(
        [
            str(exc),
            repr(exc),
            exc.message or "",
            json.dumps(exc.details, default=str),
            str(dict(exc.headers)),
            getattr(exc, "body_excerpt", None) or "",
            "".join(traceback.format_exception(exc)),
        ]
    )
    assert "ECHOecho" not in rendered
    assert secret[-4:] in exc.message  # the hint took the key's place
    assert exc.headers["X-Echo"].startswith("key=dpct_")
