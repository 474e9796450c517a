"""Hostile review of issue 22's per-call options, ``with_options()``, ``with_response`` and
the debug switch: each test failed on the code before the fix beside it."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
import pickle

import attrs
import pytest
from rawserver import Respond, profile_body, raw_server, response

from accountapi import (
    AccountClient,
    APIResponseValidationError,
    APIStatusError,
    ConfigurationError,
    RetryPolicy,
    ServiceUnavailableError,
    SyncAccountClient,
)
from accountapi.testing import Emulator, Fault, ThreadedEmulator, VirtualClock

KEY = "dpct_" + "Ech0edK3y" * 3 + "abcde"  # 37 characters: its repr fits a decode message


def _echoing(body: bytes | None = None) -> Respond:
    """A server that answers 200 with the key it was sent in ``X-Request-Id`` (and in the
    body wherever ``body`` holds ``KEY``)."""

    async def respond(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        auth = [line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization")]
        sent = auth[0].split(b" ", 2)[2]
        answer = profile_body() if body is None else body.replace(KEY.encode(), sent)
        writer.write(response(200, answer, {"X-Request-Id": f"req-{sent.decode()}"}))
        await writer.drain()

    return respond


async def test_the_debug_line_of_an_answer_echoing_the_key_shows_its_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="accountapi")
    async with raw_server(_echoing()) as server, AccountClient(KEY, base_url=server.url) as client:
        await client.account.profile()
        await client.account.with_response.profile()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 2
    for line in lines:
        assert KEY not in line
        assert "request_id=req-dpct_…bcde" in line


@pytest.mark.parametrize(
    "body",
    [
        b'{"user": 5}',
        profile_body(balance_eur=KEY),  # the key echoed in a field of the wrong type
    ],
)
async def test_a_2xx_that_fails_to_decode_never_puts_the_key_in_the_error(body: bytes) -> None:
    async with raw_server(_echoing(body)) as server, AccountClient(KEY, base_url=server.url) as c:
        with pytest.raises(APIResponseValidationError) as info:
            await c.account.profile()
    error = info.value
    assert error.request_id == "req-dpct_…bcde"
    assert KEY not in str(error)
    assert KEY not in repr(error)
    assert KEY.encode() not in pickle.dumps(error)
    context = error.__context__
    while context is not None:  # nor in an exception chained to it
        assert KEY not in str(context)
        context = context.__context__


def _deprecated_policy(retries: int) -> RetryPolicy:
    with pytest.warns(DeprecationWarning, match="max_retries="):
        return RetryPolicy(max_retries=retries)


async def test_with_options_max_retries_overrides_a_parents_deprecated_policy_count(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """The parent's ``RetryPolicy(max_retries=2)`` is not "given twice" with a derived
    client's ``max_retries=``: the per-call option already overrides it, and so must this."""
    key = emulator.add_key(fault=Fault.status(503))
    policy = _deprecated_policy(2)
    async with AccountClient(key, base_url=emulator.url, clock=clock, retry=policy) as client:
        once = client.with_options(max_retries=0)
        assert (once.max_retries, once.retry_policy) == (0, policy)
        with pytest.raises(ServiceUnavailableError):
            await once.account.profile()
        assert emulator.attempts(key) == 1
        twice = client.with_options(timeout=5).with_options(retry=policy)
        assert twice.with_options(max_retries=1).max_retries == 1
        with pytest.raises(ConfigurationError, match="given twice"):
            client.with_options(retry=policy, max_retries=1)  # both in one call: refused


def test_sync_with_options_chains_like_the_async_ones() -> None:
    """A derived sync client of a derived one: a later ``max_retries=`` overrides an
    earlier ``retry=`` with the deprecated count, a header named again in another case
    replaces the earlier one, and a bad ``default_headers`` is a ConfigurationError."""
    with ThreadedEmulator() as emulator:
        key = emulator.add_key(fault=Fault.status(503))
        with SyncAccountClient(
            key, base_url=emulator.url, clock=VirtualClock(), default_headers={"X-A": "1"}
        ) as client:
            derived = (
                client.with_options(retry=_deprecated_policy(2), default_headers={"X-T": "a"})
                .with_options(max_retries=0, default_headers={"x-t": "b"})
                .with_options(timeout=9)
            )
            assert (derived.max_retries, derived.timeout.total) == (0, 9)
            assert dict(derived.default_headers) == {"X-A": "1", "x-t": "b"}
            with pytest.raises(ServiceUnavailableError):
                derived.account.profile()
            assert emulator.attempts(key) == 1
            for bad in ([("X-A", "1")], "X-A: 1"):
                with pytest.raises(ConfigurationError, match="default_headers must be a mapping"):
                    client.with_options(default_headers=bad)  # type: ignore[arg-type]


async def test_retrying_past_a_thousand_times_keeps_backing_off(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """``max_retries`` large enough to mean "until it works" (with no deadline): the
    1,025th retry's backoff was ``initial * 2**1024``, an OverflowError out of the call."""
    key = emulator.add_key(fault=Fault.status(503))
    async with AccountClient(
        key, base_url=emulator.url, clock=clock, timeout=None, retry_budget=None
    ) as client:  # no retry budget: it would end an endless outage after 100 retries
        with pytest.raises(ServiceUnavailableError) as info:
            await client.account.profile(max_retries=1030)
    assert info.value.attempts == 1031
    assert max(clock.sleeps) <= RetryPolicy().backoff_max


@pytest.mark.parametrize("value", ["next\x85line", "\x9b31m red", "caf\xe9"])
async def test_a_header_value_with_a_c1_control_or_non_ascii_is_refused(
    emulator: Emulator, key: str, value: str
) -> None:
    """U+0080..U+00FF passed the check (C1 controls such as NEL among them, which the
    README says are refused) and went out UTF-8 encoded, which a server reading the
    header as Latin-1 (RFC 9110's obs-text) gets wrong. Values are visible ASCII."""
    with pytest.raises(ConfigurationError, match="one line of visible ASCII"):
        AccountClient(key, base_url=emulator.url, default_headers={"X-A": value})
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(ConfigurationError, match="one line of visible ASCII"):
            await client.account.profile(extra_headers={"X-A": value})
    assert emulator.records == []


class _BrokenHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the log shipper is down")


async def test_a_log_handler_that_raises_does_not_fail_the_call(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """Logging is not the call: a handler whose emit raises (a log shipper down) turned a
    call that succeeded on its retry into a RuntimeError at DEBUG (and at INFO, through
    the retry line), with the request already made."""
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503)])
    sdk = logging.getLogger("accountapi")
    handler = _BrokenHandler()
    sdk.addHandler(handler)
    level = sdk.level
    sdk.setLevel(logging.DEBUG)
    try:
        async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
            profile = await client.account.profile()
            answer = await client.account.with_response.dismiss_notifications()
            assert await client.key_gate.in_flight(key) == 0
    finally:
        sdk.removeHandler(handler)
        sdk.setLevel(level)
    assert profile.balance_eur >= 0
    assert answer.status == 204
    assert emulator.attempts(key) == 2


async def test_an_api_response_hashes_pickles_and_copies_like_the_values_it_holds(
    emulator: Emulator, key: str
) -> None:
    """A frozen value (cached, sent to a worker process): ``hash()``, ``pickle`` and
    ``deepcopy`` raised on aiohttp's read-only header proxy."""
    async with AccountClient(key, base_url=emulator.url) as client:
        answer = await client.account.with_response.profile()
        dismissed = await client.account.with_response.dismiss_notifications()
    for value in (answer, dismissed):
        assert hash(value) == hash(value)
        unpickled = pickle.loads(pickle.dumps(value))  # noqa: S301 - our own bytes
        for again in (unpickled, copy.deepcopy(value)):
            assert again == value
            assert hash(again) == hash(value)
            assert again.headers["x-request-id"] == value.request_id  # still case-insensitive
            with pytest.raises(TypeError):
                again.headers["X-Request-Id"] = "changed"  # type: ignore[index]


def test_the_retry_count_deprecation_points_at_the_users_line_through_attrs_evolve() -> None:
    """``attrs.evolve`` builds the new policy itself: the warning named attrs' own
    module, where the default filters hide a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match="max_retries=") as created:
        policy = attrs.evolve(RetryPolicy(), max_retries=3)
    with pytest.warns(DeprecationWarning, match="max_retries=") as evolved:
        attrs.evolve(policy, backoff_initial=1)
    assert [w.filename for w in (*created, *evolved)] == [__file__, __file__]


PASSWORD = "Pr0xyS3cretPassw0rd"


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:9", "https://127.0.0.1:9"])
async def test_a_proxy_echoing_its_login_never_shows_it(base_url: str) -> None:
    """The README: the proxy's ``user:password@`` "is never shown". A proxy that echoes
    the ``Proxy-Authorization`` it was sent (in its 407's body and headers, to a plain
    request or to a CONNECT) put the Basic token into the error's message, request id,
    headers and pickle; through a forward proxy a 2xx's headers carried it too."""
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    answers = [407, 200]

    async def proxy(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        line = [h for h in head.split(b"\r\n") if h.lower().startswith(b"proxy-authorization")]
        echoed = line[0].decode()
        status = answers.pop(0)
        body = (
            profile_body()
            if status == 200
            else json.dumps({"error": "proxy_auth", "message": f"bad {echoed}"}).encode()
        )
        echo = {"X-Request-Id": f"r {echoed}", "X-Echo": echoed}
        writer.write(response(status, body, echo, reason="Whatever"))
        await writer.drain()

    def shown(text: str) -> bool:
        return PASSWORD in text or token in text

    async with raw_server(proxy) as server:
        login = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}"
        async with AccountClient(KEY, base_url=base_url, proxy=login, max_retries=0) as client:
            with pytest.raises(APIStatusError) as info:
                await client.account.profile()
            error = info.value
            assert error.status == 407
            assert not shown(str(error))
            assert not shown(repr(error))
            assert not shown(str(error.request_id))
            assert not shown(str(list(error.headers.items())))
            assert not shown(pickle.dumps(error).decode("latin-1"))
            if base_url.startswith("http:"):  # a forward proxy: it also relays the 2xx
                answer = await client.account.with_response.profile()
                assert not shown(str(list(answer.headers.items())))
                assert not shown(str(answer.request_id))
