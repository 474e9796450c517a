"""No frame an SDK error passed through shows the key: not to ``capture_locals``, not to Sentry.

Error trackers record the local variables of every frame in a traceback by default. Each
test makes a call fail one way, then renders the error with
``traceback.TracebackException(capture_locals=True)`` and through a real ``sentry-sdk``
event, and looks for the key's distinctive middle and for the ``Authorization`` header value.
"""

from __future__ import annotations

import asyncio
import json
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from accountapi import (
    AccountAPIError,
    AccountClient,
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    AuthenticationError,
    ClientStateError,
    MalformedAPIKeyError,
    RateLimitError,
    RetryBudget,
    ServiceUnavailableError,
    Timeout,
)
from accountapi.testing import Emulator, Fault, VirtualClock

MARK = "CANARYxCANARYx"
# Built, not written out: Sentry sends source lines around each frame, this file's too.
HEADER = "Bearer" + " dpct_"
CANARY = "dpct_" + MARK + "Z" * 18

Scenario = Callable[[Emulator], Awaitable[None]]


class _Recorder(Transport):
    """Keeps every envelope instead of sending it anywhere."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def sentry() -> Iterator[_Recorder]:
    """A live sentry-sdk client with its defaults for local variables, recording events."""
    recorder = _Recorder()
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",
        transport=recorder,
        default_integrations=False,
        include_local_variables=True,
    )
    try:
        yield recorder
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.init()  # back to a no-op client


def _rendered(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def _sentry_text(recorder: _Recorder, exc: BaseException) -> str:
    before = len(recorder.envelopes)
    sentry_sdk.capture_exception(exc)
    sentry_sdk.flush()
    envelopes = recorder.envelopes[before:]
    assert envelopes, "sentry recorded no event"
    return "".join(
        json.dumps(item.payload.json, default=repr) for env in envelopes for item in env.items
    )


async def _unknown_key(emu: Emulator) -> None:
    async with AccountClient(CANARY, base_url=emu.url) as client:
        await client.account.profile()


async def _unknown_key_per_call(emu: Emulator) -> None:
    async with AccountClient(base_url=emu.url) as client:
        await client.account.profile(api_key=CANARY)


async def _retries_exhausted(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.status(503))
    async with AccountClient(base_url=emu.url, clock=VirtualClock(), max_retries=2) as client:
        await client.account.profile(api_key=CANARY)


async def _dropped(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.drop())
    async with AccountClient(base_url=emu.url, clock=VirtualClock(), max_retries=2) as client:
        await client.account.profile(api_key=CANARY)


async def _broken_body(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.reset_mid_body())
    async with AccountClient(CANARY, base_url=emu.url) as client:
        await client.account.profile()


async def _refused(emu: Emulator) -> None:
    async with AccountClient(
        CANARY, base_url="http://127.0.0.1:9", clock=VirtualClock(), max_retries=1
    ) as client:
        await client.account.profile()


async def _attempt_timeout(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.delay(5))
    async with AccountClient(
        CANARY, base_url=emu.url, timeout=Timeout(attempt=0.1), max_retries=0
    ) as client:
        await client.account.profile()


async def _bad_body(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.body(b"{not json"))
    async with AccountClient(CANARY, base_url=emu.url) as client:
        await client.account.profile()


async def _malformed_per_call(emu: Emulator) -> None:
    async with AccountClient(base_url=emu.url) as client:
        await client.account.profile(api_key=CANARY + " ")


async def _malformed_default(emu: Emulator) -> None:
    AccountClient(CANARY + "\n", base_url=emu.url)


async def _cooling_down(emu: Emulator) -> None:
    emu.add_key(key=CANARY)
    async with AccountClient(CANARY, base_url=emu.url, clock=VirtualClock()) as client:
        await client.key_gate.cool_down(CANARY, 50.0)
        await client.account.profile()


async def _no_slot(emu: Emulator) -> None:
    emu.add_key(key=CANARY, latency=0.5)
    async with AccountClient(CANARY, base_url=emu.url, max_retries=0) as client:
        holders = [asyncio.create_task(client.account.profile()) for _ in range(10)]
        await emu.wait_for_attempts(CANARY, 10)
        try:
            await client.account.profile(timeout=0.05)
        finally:
            await asyncio.gather(*holders)


async def _closed(emu: Emulator) -> None:
    client = AccountClient(CANARY, base_url=emu.url)
    await client.aclose()
    await client.account.dismiss_notifications()


async def _bulk(emu: Emulator) -> None:
    async with AccountClient(base_url=emu.url) as client:
        async for result in client.balances([CANARY, CANARY + " "]):
            assert result.error is not None
            raise result.error


async def _budget_spent(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.status(503))
    budget = RetryBudget(capacity=1)
    async with AccountClient(
        CANARY, base_url=emu.url, clock=VirtualClock(), retry_budget=budget
    ) as client:
        await client.account.profile()


async def _shared_read_failed(emu: Emulator) -> None:
    emu.add_key(key=CANARY, fault=Fault.status(503), latency=0.05)
    async with AccountClient(
        CANARY, base_url=emu.url, clock=VirtualClock(), coalesce=True
    ) as client:
        joiner = asyncio.create_task(client.account.profile())
        try:
            await client.account.profile()
        finally:
            await asyncio.gather(joiner, return_exceptions=True)


async def _joiner_timed_out(emu: Emulator) -> None:
    emu.add_key(key=CANARY, latency=0.5)
    async with AccountClient(CANARY, base_url=emu.url, coalesce=True) as client:
        owner = asyncio.create_task(client.account.profile())
        await asyncio.sleep(0)  # the owner's read exists, not yet sent
        try:
            await client.account.profile(timeout=0.05)
        finally:
            await owner


SCENARIOS: dict[str, tuple[Scenario, type[AccountAPIError]]] = {
    "401 default key": (_unknown_key, AuthenticationError),
    "401 per-call key": (_unknown_key_per_call, AuthenticationError),
    "503 retries exhausted": (_retries_exhausted, ServiceUnavailableError),
    "dropped before any byte, retried": (_dropped, APIConnectionError),
    "body broken off": (_broken_body, APIConnectionError),
    "connection refused": (_refused, APIConnectionError),
    "attempt timeout": (_attempt_timeout, APITimeoutError),
    "malformed body": (_bad_body, APIResponseValidationError),
    "malformed per-call key": (_malformed_per_call, MalformedAPIKeyError),
    "malformed default key": (_malformed_default, MalformedAPIKeyError),
    "cooling down": (_cooling_down, RateLimitError),
    "no slot before the deadline": (_no_slot, APITimeoutError),
    "closed client": (_closed, ClientStateError),
    "bulk result": (_bulk, AccountAPIError),
    "retry budget spent": (_budget_spent, ServiceUnavailableError),
    "shared read failed": (_shared_read_failed, ServiceUnavailableError),
    "joiner's deadline": (_joiner_timed_out, APITimeoutError),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_no_frame_of_an_sdk_error_shows_the_key(
    emulator: Emulator, sentry: _Recorder, name: str
) -> None:
    """The error's traceback, rendered with every frame's locals and sent to Sentry, holds no key."""
    scenario, expected = SCENARIOS[name]
    with pytest.raises(expected) as info:
        await scenario(emulator)
    rendered = _rendered(info.value)
    assert "Traceback" in rendered
    assert MARK not in rendered
    assert HEADER not in rendered
    event = _sentry_text(sentry, info.value)
    assert MARK not in event
    assert HEADER not in event


def test_the_checks_would_see_a_key_in_a_local(sentry: _Recorder) -> None:
    """Control: a frame holding the key in a local is caught by both renderings."""

    def leaky(key: str) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom") as info:
        leaky(CANARY)
    assert MARK in _rendered(info.value)
    assert MARK in _sentry_text(sentry, info.value)
