"""The clients under test, each as one coroutine that runs a bounded round of load.

Every variant asks the same responder for the same profile body and ends with the same
thing in hand: parsed JSON (the raw ceiling) or a decoded ``accountapi.Profile``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from accountapi import AccountClient, Limits
from accountapi._decode import decode_profile

from ._keys import SINGLE_KEY, bench_key
from ._load import Load, LoopKind, drive

__all__ = ["BALANCES_KEYS", "Variant", "balances_available", "throughput_variants"]

PROFILE_PATH = "/v1/account/profile"
BALANCES_KEYS = 10_000
_AUTH = {"Authorization": "Bearer " + SINGLE_KEY}

Runner = Callable[[str, int, int, float], Coroutine[Any, Any, Load]]


@dataclass(frozen=True)
class Variant:
    """One row of the throughput table."""

    name: str
    label: str
    loop: LoopKind
    run: Runner
    baseline: str  # the variant its per-round ratio is also taken against
    note: str = ""


def balances_available() -> bool:
    return hasattr(AccountClient, "balances")


async def raw_aiohttp(url: str, requests: int, concurrency: int, time_limit: float) -> Load:
    """The ceiling: one ClientSession, get, read, json.loads."""
    return await _raw_loop(url, requests, concurrency, time_limit, lambda _: _AUTH)


async def raw_aiohttp_keys(url: str, requests: int, concurrency: int, time_limit: float) -> Load:
    """Raw aiohttp over distinct keys, as one would check many keys by hand: the
    like-for-like reference for ``profile(api_key=k)`` and ``balances()``."""
    keys = [bench_key("tput", i) for i in range(requests)]  # input data, made before timing
    return await _raw_loop(
        url,
        requests,
        concurrency,
        time_limit,
        lambda index: {"Authorization": "Bearer " + keys[index]},
    )


async def _raw_loop(
    url: str,
    requests: int,
    concurrency: int,
    time_limit: float,
    headers_of: Callable[[int], dict[str, str]],
) -> Load:
    target = url + PROFILE_PATH
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> object:
            async with session.get(target, headers=headers_of(index)) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"status {resp.status}")
                return json.loads(body)

        return await drive(one, requests=requests, concurrency=concurrency, time_limit=time_limit)


def sdk_profile(**options: Any) -> Runner:
    """``client.account.profile()`` with one key, on a client built with ``options``."""

    async def run(url: str, requests: int, concurrency: int, time_limit: float) -> Load:
        async with AccountClient(SINGLE_KEY, base_url=url, **options) as client:
            profile = client.account.profile

            async def one(_: int) -> object:
                return await profile()

            return await drive(
                one, requests=requests, concurrency=concurrency, time_limit=time_limit
            )

    return run


async def sdk_many_keys(url: str, requests: int, concurrency: int, time_limit: float) -> Load:
    """``profile(api_key=...)`` over distinct keys on one client: the per-call key path."""
    keys = [bench_key("tput", i) for i in range(requests)]  # input data, made before timing
    async with AccountClient(base_url=url) as client:
        profile = client.account.profile

        async def one(index: int) -> object:
            return await profile(api_key=keys[index])

        return await drive(one, requests=requests, concurrency=concurrency, time_limit=time_limit)


def sdk_balances(**options: Any) -> Runner:
    """``client.balances(keys, concurrency=..., **options)`` over ``requests`` distinct keys."""

    async def run(url: str, requests: int, concurrency: int, time_limit: float) -> Load:
        return await _balances_round(url, requests, concurrency, time_limit, options)

    return run


async def _balances_round(
    url: str, requests: int, concurrency: int, time_limit: float, options: dict[str, Any]
) -> Load:
    keys = [bench_key("tput", i) for i in range(requests)]  # input data, made before timing
    done = errors = 0
    capped = False
    async with AccountClient(base_url=url) as client:
        cpu0, t0 = time.process_time(), time.perf_counter()
        stop_at = t0 + time_limit
        results = client.balances(keys, concurrency=concurrency, **options)
        closing = getattr(results, "aclose", None)
        try:
            async for result in results:
                done += 1
                if not (result.ok and result.profile is not None):
                    errors += 1
                if time.perf_counter() > stop_at:
                    capped = done < requests
                    break
        finally:
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()
        elapsed = time.perf_counter() - t0
        return Load(done, errors, elapsed, time.process_time() - cpu0, capped)


async def httpx_decode(url: str, requests: int, concurrency: int, time_limit: float) -> Load:
    """httpx.AsyncClient + the SDK's own decoder, pool sized like aiohttp's (100, all kept)."""
    import httpx

    target = url + PROFILE_PATH
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one(_: int) -> object:
            resp = await client.get(target, headers=_AUTH)
            if resp.status_code != 200:
                raise RuntimeError(f"status {resp.status_code}")
            return decode_profile(resp.content)

        return await drive(one, requests=requests, concurrency=concurrency, time_limit=time_limit)


def throughput_variants(*, with_uvloop: bool, with_httpx: bool) -> list[Variant]:
    """The rows of the throughput table, raw aiohttp first (it is every ratio's baseline)."""
    rows = [
        Variant("raw", "raw aiohttp + json.loads", "asyncio", raw_aiohttp, "raw"),
        Variant(
            "sdk",
            "accountapi profile() (defaults)",
            "asyncio",
            sdk_profile(),
            "raw",
            "one key: the per-key gate keeps 10 in flight",
        ),
        Variant(
            "sdk_no_retry",
            "accountapi profile() max_retries=0",
            "asyncio",
            sdk_profile(max_retries=0),
            "sdk",
            "success-path cost of the retry machinery",
        ),
        Variant(
            "sdk_ungated",
            "accountapi profile() per_key=None",
            "asyncio",
            sdk_profile(limits=Limits(per_key=None)),
            "raw",
            "same requests in flight as raw",
        ),
        Variant(
            "raw_keys",
            "raw aiohttp + json.loads, distinct keys",
            "asyncio",
            raw_aiohttp_keys,
            "raw",
            "a new key per request, by hand: like-for-like for the two below",
        ),
        Variant(
            "sdk_keys",
            "accountapi profile(api_key=k), distinct keys",
            "asyncio",
            sdk_many_keys,
            "raw_keys",
            "distinct key per call; reference for balances()",
        ),
    ]
    if balances_available():
        rows += [
            Variant(
                "balances",
                "accountapi balances(), distinct keys",
                "asyncio",
                sdk_balances(),
                "raw_keys",
            ),
            Variant(
                "balances_no_window",
                "accountapi balances(dedupe_window=0), distinct keys",
                "asyncio",
                sdk_balances(dedupe_window=0),
                "balances",
                "what keeping the last 10,000 profiles for repeats costs",
            ),
        ]
    if with_httpx:
        rows.append(
            Variant("httpx", "httpx.AsyncClient + decode_profile", "asyncio", httpx_decode, "raw")
        )
    if with_uvloop:
        rows += [
            Variant(
                "raw_uvloop", "raw aiohttp + json.loads [uvloop]", "uvloop", raw_aiohttp, "raw"
            ),
            Variant(
                "sdk_uvloop",
                "accountapi profile() (defaults) [uvloop]",
                "uvloop",
                sdk_profile(),
                "raw_uvloop",
            ),
        ]
    return rows
