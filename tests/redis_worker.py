"""A worker process for tests/test_redis_gate.py: one AccountClient sharing a RedisKeyGate.

Run as ``python tests/redis_worker.py EMULATOR_URL REDIS_URL CALLS LEASE_TTL``, with the
API key in ``$ACCOUNTAPI_API_KEY`` (never on the command line). It builds its client,
prints ``READY``, waits for one line on stdin (so all workers start together), makes
CALLS concurrent profile calls without retries, and prints ``RESULT {json}``: how many
succeeded, the error class names of those that did not, and how many WARNINGs the SDK
logged (a fallback to the local limit would be one).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sys

from accountapi import AccountClient
from accountapi.gates import RedisKeyGate


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


async def main(emulator_url: str, redis_url: str, calls: int, lease_ttl: float) -> None:
    warnings = _Count()
    logging.getLogger("accountapi").addHandler(warnings)
    gate = RedisKeyGate(redis_url, lease_ttl=lease_ttl)
    async with gate, AccountClient(base_url=emulator_url, key_gate=gate, max_retries=1) as client:
        await gate.in_flight("warm-up")  # connect and load the scripts, as a running worker has
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(
            *(client.account.profile() for _ in range(calls)), return_exceptions=True
        )
    errors = collections.Counter(type(r).__name__ for r in results if isinstance(r, BaseException))
    summary = {
        "ok": calls - sum(errors.values()),
        "errors": dict(errors),
        "warnings": warnings.count,  # a Redis outage (local fallback) would show here
    }
    print("RESULT " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    url, redis_url, calls, ttl = sys.argv[1:5]
    asyncio.run(main(url, redis_url, int(calls), float(ttl)))
