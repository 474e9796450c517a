"""Per-call options, ``default_headers``, ``with_options()`` and ``with_response``,
against the emulator (and a raw server where the emulator would never misbehave)."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from rawserver import profile_body, raw_server, response

from accountapi import (
    AccountClient,
    ClientStateError,
    ConfigurationError,
    Profile,
    RetryPolicy,
    ServiceUnavailableError,
    SyncAccountClient,
    Timeout,
)
from accountapi._response import APIResponse
from accountapi.testing import Emulator, Fault, ThreadedEmulator, VirtualClock

DISMISS = "/v1/account/notifications/dismiss"


def _sent(emulator: Emulator, key_hint: str | None = None) -> list[dict[str, str]]:
    """The headers of every request the emulator saw (Authorization is never recorded)."""
    return [
        {name.lower(): value for name, value in record.headers.items()}
        for record in emulator.records
        if key_hint is None or record.key_hint == key_hint
    ]


# -- max_retries: one way, per client, per call, per derived client -------------------


async def test_max_retries_per_call_overrides_the_clients(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """``profile(max_retries=n)`` makes n retries; the client's own count is untouched."""
    key = emulator.add_key(fault=Fault.status(503))
    async with AccountClient(key, base_url=emulator.url, clock=clock, max_retries=3) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.account.profile(max_retries=0)
        assert info.value.attempts == 1
        assert emulator.attempts(key) == 1
        with pytest.raises(ServiceUnavailableError):
            await client.account.profile(max_retries=1)
        assert emulator.attempts(key) == 1 + 2
        with pytest.raises(ServiceUnavailableError):
            await client.account.profile()
        assert emulator.attempts(key) == 3 + 4
        with pytest.raises(ServiceUnavailableError):
            await client.account.dismiss_notifications(max_retries=2)
        assert emulator.attempts(key, DISMISS) == 3
    assert client.max_retries == 3


@pytest.mark.parametrize("bad", [-1, True, 1.5, "2"])
async def test_a_bad_per_call_max_retries_is_refused_before_anything_is_sent(
    emulator: Emulator, key: str, bad: Any
) -> None:
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(ConfigurationError, match="max_retries"):
            await client.account.profile(max_retries=bad)
    assert emulator.records == []


async def test_retry_policy_max_retries_is_deprecated_but_honoured(
    emulator: Emulator, clock: VirtualClock
) -> None:
    """The old spelling warns at the user's line and still counts; both at once is refused."""
    key = emulator.add_key(fault=Fault.status(503))
    with pytest.warns(DeprecationWarning, match="max_retries=") as caught:
        policy = RetryPolicy(max_retries=2)
    assert caught[0].filename == __file__
    async with AccountClient(key, base_url=emulator.url, clock=clock, retry=policy) as client:
        assert client.max_retries == 2
        with pytest.raises(ServiceUnavailableError):
            await client.account.profile()
    assert emulator.attempts(key) == 3
    with pytest.raises(ConfigurationError, match="given twice"):
        AccountClient(key, base_url=emulator.url, retry=policy, max_retries=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert RetryPolicy(backoff_initial=1).max_retries is None  # no warning without it


# -- headers ---------------------------------------------------------------------------


async def test_default_headers_ride_on_every_call_and_extra_headers_on_one(
    emulator: Emulator, key: str
) -> None:
    async with AccountClient(
        key, base_url=emulator.url, default_headers={"X-Tenant": "acme", "X-Trace": "client"}
    ) as client:
        await client.account.profile(extra_headers={"X-Trace": "call", "X-Once": "1"})
        await client.account.profile()
        await client.account.dismiss_notifications(extra_headers={"X-Once": "2"})
        assert dict(client.default_headers) == {"X-Tenant": "acme", "X-Trace": "client"}
    first, second, third = _sent(emulator)
    assert (first["x-tenant"], first["x-trace"], first["x-once"]) == ("acme", "call", "1")
    assert (second["x-tenant"], second["x-trace"]) == ("acme", "client")
    assert "x-once" not in second  # the call's headers stayed with that call
    assert (third["x-tenant"], third["x-once"]) == ("acme", "2")
    # The SDK's own headers are the SDK's: one User-Agent, its own.
    assert all(h["user-agent"].startswith("accountapi-python/") for h in (first, second, third))


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer other"},
        {"authorization": "Basic eA=="},
        {"User-Agent": "mine/1.0"},
        {"Accept-Encoding": "identity"},
        {"Host": "evil.example"},
        {"Content-Length": "5"},
        {"Transfer-Encoding": "chunked"},
        {"Connection": "close"},
        {"Cookie": "a=b"},
    ],
)
async def test_the_sdks_own_and_connection_headers_cannot_be_set(
    emulator: Emulator, key: str, headers: dict[str, str]
) -> None:
    (name,) = headers
    with pytest.raises(ConfigurationError, match=f"may not set {name}"):
        AccountClient(key, base_url=emulator.url, default_headers=headers)
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(ConfigurationError, match=f"may not set {name}"):
            await client.account.profile(extra_headers=headers)
        with pytest.raises(ConfigurationError, match=f"may not set {name}"):
            client.with_options(default_headers=headers)
    assert emulator.records == []


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"X-A": "one\r\nX-Injected: yes"}, "one line"),
        ({"X-A": "tab\tok but nul\x00"}, "one line"),
        ({"X-A": 5}, "one line"),
        ({"X A": "v"}, "not a valid header name"),
        ({"": "v"}, "not a valid header name"),
        ({b"X-A": "v"}, "not a valid header name"),
        ([("X-A", "v")], "must be a mapping"),
    ],
)
async def test_a_malformed_header_is_refused_without_echoing_its_value(
    emulator: Emulator, key: str, headers: Any, match: str
) -> None:
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(ConfigurationError, match=match) as info:
            await client.account.profile(extra_headers=headers)
    assert "Injected" not in str(info.value)
    assert emulator.records == []


# -- with_options ------------------------------------------------------------------------


async def test_with_options_shares_pool_gate_and_lifecycle(emulator: Emulator) -> None:
    """A derived client sends on the parent's connections, within the parent's per-key
    limit, and closing either ends both."""
    key = emulator.add_key(latency=0.05)
    async with AccountClient(key, base_url=emulator.url) as client:
        fast = client.with_options(timeout=Timeout(total=7), max_retries=0)
        assert (fast.timeout.total, fast.max_retries) == (7, 0)
        assert (client.timeout.total, client.max_retries) == (60, 4)
        await client.account.profile()
        await fast.account.profile()
        ports = {record.client_port for record in emulator.records}
        assert len(ports) == 1  # one pooled connection served both clients
        # 20 calls at once on one key, half from each: the one gate admits 10 at a time.
        await asyncio.gather(*(c.account.profile() for c in (client, fast) for _ in range(10)))
        assert emulator.max_in_flight(key) == 10
        assert emulator.limit_rejections == 0
        assert fast.key_gate is client.key_gate
        # aclose() of the derived client ends the parent's call in progress too.
        slow = asyncio.create_task(client.account.profile(timeout=30))
        await emulator.wait_for_attempts(key, 23)
        await fast.aclose()
        with pytest.raises(ClientStateError):
            await slow
        assert client.closed
        with pytest.raises(ClientStateError):
            await client.account.profile()


async def test_with_options_default_headers_and_key_stay_with_the_derived_client(
    emulator: Emulator, key: str
) -> None:
    other = emulator.add_key()
    async with AccountClient(key, base_url=emulator.url, default_headers={"X-A": "1"}) as client:
        tenant = client.with_options(api_key=other, default_headers={"X-B": "2", "x-a": "3"})
        await tenant.account.profile()
        await client.account.profile()
    derived, parent = emulator.records
    assert derived.key_hint != parent.key_hint
    assert emulator.attempts(other) == 1
    assert emulator.attempts(key) == 1
    d = {name.lower(): v for name, v in derived.headers.items()}
    p = {name.lower(): v for name, v in parent.headers.items()}
    assert (d["x-a"], d["x-b"]) == ("3", "2")
    assert p["x-a"] == "1"
    assert "x-b" not in p


async def test_with_options_retry_policy_and_count(emulator: Emulator, clock: VirtualClock) -> None:
    key = emulator.add_key(fault=Fault.status(503))
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        patient = client.with_options(
            retry=RetryPolicy(backoff_initial=2, backoff_max=2, max_wait=2), max_retries=1
        )
        with pytest.raises(ServiceUnavailableError):
            await patient.account.profile()
        assert emulator.attempts(key) == 2
        assert len(clock.sleeps) == 1
        assert clock.sleeps[0] <= 2
        assert client.retry_policy.backoff_initial == 0.25  # the parent's own is unchanged
        for bad in ({"max_retries": -1}, {"retry": 3}, {"timeout": -1}, {"api_key": "a b"}):
            with pytest.raises(ConfigurationError):
                client.with_options(**bad)


# -- with_response -------------------------------------------------------------------------


async def test_with_response_gives_status_headers_request_id_and_attempts(
    emulator: Emulator, clock: VirtualClock
) -> None:
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503)])
    async with AccountClient(key, base_url=emulator.url, clock=clock) as client:
        answer = await client.account.with_response.profile()
        plain = await client.account.profile()
        dismissed = await client.account.with_response.dismiss_notifications()
    assert isinstance(answer, APIResponse)
    assert isinstance(answer.parsed, Profile)
    assert answer.parsed == plain
    assert answer.status == 200
    assert answer.attempts == 2
    answered = next(r for r in emulator.records if r.status == 200)
    assert answer.request_id == answered.request_id
    assert answer.headers["x-request-id"] == answered.request_id  # case-insensitive
    assert answer.headers["Content-Type"].startswith("application/json")
    assert "headers" not in repr(answer)
    assert (dismissed.parsed, dismissed.status, dismissed.attempts) == (None, 204, 1)
    assert dismissed.request_id == emulator.records[-1].request_id


async def test_with_response_headers_never_show_the_key() -> None:
    """A server that echoes the key in a 200's headers: the response shows its hint."""
    key = "dpct_" + "s3cr3t" * 6

    async def echo(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        auth = [line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization")]
        echoed = auth[0].split(b" ", 2)[2].decode()
        writer.write(response(200, profile_body(), {"X-Echo": f"you sent {echoed}"}))
        await writer.drain()

    async with raw_server(echo) as server, AccountClient(key, base_url=server.url) as client:
        answer = await client.account.with_response.profile()
    assert key not in answer.headers["X-Echo"]
    assert answer.headers["X-Echo"].startswith("you sent dpct_…")
    assert key not in repr(answer)


# -- the sync client -----------------------------------------------------------------------


def test_sync_per_call_options_with_options_and_with_response() -> None:
    with ThreadedEmulator() as emulator:
        key = emulator.add_key(fault=Fault.status(503))
        good = emulator.add_key()
        with SyncAccountClient(
            good, base_url=emulator.url, clock=VirtualClock(), default_headers={"X-A": "1"}
        ) as client:
            with pytest.raises(ServiceUnavailableError):
                client.account.profile(api_key=key, max_retries=1, extra_headers={"X-B": "2"})
            assert emulator.attempts(key) == 2
            answer = client.account.with_response.profile()
            assert answer.status == 200
            assert isinstance(answer.parsed, Profile)
            assert answer.request_id == emulator.records[-1].request_id
            derived = client.with_options(api_key=key, max_retries=0, default_headers={"X-C": "3"})
            assert derived.max_retries == 0
            assert client.max_retries == 4
            assert dict(derived.default_headers) == {"X-A": "1", "X-C": "3"}
            with pytest.raises(ServiceUnavailableError):
                derived.account.profile()
            assert emulator.attempts(key) == 3
            assert [result.ok for result in derived.balances([good])] == [True]
            headers = [{n.lower(): v for n, v in r.headers.items()} for r in emulator.records]
            assert headers[0]["x-a"] == "1"
            assert headers[0]["x-b"] == "2"
            assert headers[3]["x-c"] == "3"
            with pytest.raises(ConfigurationError):
                client.with_options(max_retries=-1)
            derived.close()  # one client underneath: closing the derived one closes both
            assert client.closed
            with pytest.raises(ClientStateError):
                client.account.profile()
