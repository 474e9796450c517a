"""The soak: 10,000 calls over 2,000 keys at concurrency 200 through a realistic fault mix.

Nothing is lost, nothing is wrong, nothing unsafe is retried, no key exceeds its limit,
and every connection goes back to the pool. The tally is printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from accountapi import (
    AccountAPIError,
    AccountClient,
    APITimeoutError,
    AuthenticationError,
    Limits,
    Profile,
    RetryPolicy,
    Timeout,
)
from accountapi.testing import Emulator, Fault

CALLS = 10_000
KEYS = 2_000
HOT_KEYS = 10  # each called 50 times in a burst: the per-key limit must hold
CONCURRENCY = 200

FAULT_MIX = [
    (0.05, Fault.rate_limited(0.05)),
    (0.03, Fault.status(503)),
    (0.02, Fault.html(502)),
    (0.02, Fault.drop()),
    (0.01, Fault.reset_mid_body()),
    (0.01, Fault.truncated()),
    (0.01, Fault.stall_body(0.05)),  # slow, but within the read timeout: must succeed
    (0.01, Fault.status(500)),
]
INVALID_SHARE = 0.01


@pytest.mark.slow
@pytest.mark.timeout(300)  # ~15 s alone; 45 s seen with both cores busy
async def test_soak_loses_nothing_and_retries_only_what_is_safe() -> None:
    """10,000 calls with ~16% faults: one outcome each, exact balances, 500/401 never retried,
    no key over 10 in flight, no 429 from the limit, no stray task, pool back to idle."""
    rng = random.Random(20261125)  # noqa: S311 - a repeatable workload, not cryptography
    loop = asyncio.get_running_loop()
    loop_errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: loop_errors.append(context))
    retries: Counter[str] = Counter()

    async with Emulator(latency=0.001) as emu:
        keys = [emu.add_key({"balance_eur": f"{i}.{i % 997:06d}"}) for i in range(KEYS)]
        emu.set_fault_mix(FAULT_MIX, seed=7)
        cold = keys[HOT_KEYS:]
        blocks = [[cold[i % len(cold)]] for i in range(CALLS - HOT_KEYS * 50)]
        blocks += [[key] * 50 for key in keys[:HOT_KEYS]]  # bursts of 50 on one key
        rng.shuffle(blocks)
        calls = [key for block in blocks for key in block]
        invalid = 0
        for i in range(len(calls)):
            if rng.random() < INVALID_SHARE:
                calls[i] = f"dpct_not_a_registered_key_{i:06d}"
                invalid += 1
        assert len(calls) == CALLS

        outcomes: list[Profile | AccountAPIError | None] = [None] * CALLS
        async with AccountClient(
            base_url=emu.url,
            limits=Limits(max_connections=CONCURRENCY),
            # Generous: no fault here needs a timeout to end, so one only stands for a
            # machine too busy to answer (a full-suite run beside other jobs once timed
            # out a fifth of the calls at read=0.5 s, attempt=2 s).
            timeout=Timeout(read=5, attempt=15, total=60),
            retry=RetryPolicy(backoff_initial=0.02, backoff_max=0.2),
            max_retries=4,
            on_retry=lambda event: retries.update([type(event.error).__name__]),
        ) as client:
            # The client's own pool (the SDK's connector), looked at read-only at the end.
            connector = client._transport.session().connector
            assert isinstance(connector, aiohttp.TCPConnector)
            queue = iter(enumerate(calls))

            async def worker() -> None:
                for index, key in queue:
                    try:
                        outcomes[index] = await client.account.profile(api_key=key)
                    except AccountAPIError as exc:
                        outcomes[index] = exc

            started = loop.time()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            elapsed = loop.time() - started
            in_use = len(connector._acquired)  # read-only look: aiohttp has no public count
        # With the client closed, any task still alive must belong to the emulator's server.
        leftover = {
            t.get_coro().__qualname__  # type: ignore[union-attr]
            for t in asyncio.all_tasks()
            if t is not asyncio.current_task()
        }

        by_class = Counter(type(o).__name__ for o in outcomes)
        statuses = Counter(r.status for r in emu.records)
        max_in_flight = max(emu.max_in_flight(k) for k in keys)
        print(
            f"\nsoak: {CALLS} calls, {KEYS} keys, concurrency {CONCURRENCY}, {elapsed:.1f}s"
            f"\n  server requests: {len(emu.records)}; statuses: {dict(sorted(statuses.items(), key=str))}"
            f"\n  retries by cause: {dict(retries)}"
            f"\n  outcomes: {dict(by_class)}"
            f"\n  max in flight per key: {max_in_flight}; 429s from the per-key limit: {emu.limit_rejections}"
        )

        # Exactly one outcome per call, of an SDK type.
        assert all(isinstance(o, Profile | AccountAPIError) for o in outcomes)
        # Every success is the emulator's ground truth for that key.
        for key, outcome in zip(calls, outcomes, strict=True):
            if isinstance(outcome, Profile):
                truth = emu.profile(key)
                assert outcome.balance_eur == Decimal(truth["balance_eur"])
                assert outcome.id == truth["id"]
        # 500 and 401 end a call at once: one such answer per such outcome, never a retry
        # after it. On a loaded machine an attempt can time out while the server is still
        # answering it: that answer is sent (and recorded) but its call ends as an
        # APITimeoutError, so a timeout may stand for one of them, never a retry.
        timeouts = by_class["APITimeoutError"]
        errors_500 = by_class["InternalServerError"]
        assert errors_500 <= statuses[500] <= errors_500 + timeouts
        unknown = [o for key, o in zip(calls, outcomes, strict=True) if key.startswith("dpct_not_")]
        assert len(unknown) == invalid
        assert all(isinstance(o, AuthenticationError | APITimeoutError) for o in unknown)
        auth = sum(isinstance(o, AuthenticationError) for o in unknown)
        assert auth <= statuses[401] <= invalid
        assert sum(isinstance(o, AuthenticationError) for o in outcomes) == auth
        # The faults actually happened, and transient ones were retried.
        assert retries["RateLimitError"] > 0
        assert retries["ServiceUnavailableError"] > 0
        assert retries["BadGatewayError"] > 0
        # Connections dropped before any byte of an answer were retried by the SDK, counted.
        assert retries["APIConnectionError"] > 0
        assert by_class["Profile"] > 0.9 * CALLS
        # Limits held.
        assert max_in_flight <= 10
        assert emu.limit_rejections == 0
        assert max(emu.max_in_flight(k) for k in keys[:HOT_KEYS]) == 10
        # Nothing left behind.
        assert in_use == 0
        assert loop_errors == []
        assert leftover <= {"RequestHandler.start", "Emulator._handle"}
