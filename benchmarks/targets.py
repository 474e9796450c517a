"""The issue's targets, checked against one run's numbers: PASS, MISS or N/A, never softened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .decode import DecodeRow
from .manykeys import ManyKeysRow
from .retry import RetryAccuracy
from .throughput import ThroughputRow

__all__ = ["Target", "evaluate"]

# Issue 13: the one-key path stays ahead of raw aiohttp, the distinct-key paths reach it.
PROFILE_MIN_RATIO = 1.00
DISTINCT_MIN_RATIO = 1.00
BALANCES_MIN_RATIO = 0.95
TARGET_CONCURRENCIES = (64, 256)  # the c=1 rows are for reference (httpx at low load)
DECODE_MAX_US = 10.0
MANY_KEYS_COUNT = 100_000
MANY_KEYS_MAX_MB = 100.0
FLAT_TOLERANCE = 0.10  # peak RSS at the largest count within 10% of the smallest
RETRY_MAX_LATE_MS = 50.0


@dataclass(frozen=True)
class Target:
    name: str
    wanted: str
    measured: str
    status: str  # PASS, MISS or N/A


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _throughput(rows: Sequence[ThroughputRow], balances_available: bool) -> list[Target]:
    found: list[Target] = []
    for name, title, floor in (
        ("sdk", "profile() throughput, one key", PROFILE_MIN_RATIO),
        ("sdk_keys", "profile(api_key=k) throughput, distinct keys", DISTINCT_MIN_RATIO),
        ("balances", "balances() throughput, distinct keys", BALANCES_MIN_RATIO),
    ):
        mine = [r for r in rows if r.name == name and r.concurrency in TARGET_CONCURRENCIES]
        if name == "balances" and not balances_available:
            found.append(
                Target(
                    title, f"≥ {floor:.2f}x raw aiohttp", "AccountClient has no balances()", "N/A"
                )
            )
            continue
        for row in mine:
            found.append(
                Target(
                    f"{title}, c={row.concurrency}",
                    f"≥ {floor:.2f}x raw aiohttp",
                    f"{row.ratio.text('{:.2f}')}x over {row.ratio.n} rounds of {row.requests:,}",
                    _verdict(row.ratio.median >= floor),
                )
            )
    return found


def _decode(rows: Sequence[DecodeRow]) -> list[Target]:
    by_name = {r.name: r for r in rows}
    ours = by_name.get("accountapi")
    if ours is None:
        return []
    # The ratio to pydantic's Rust validator is no longer a target (issue 13): the decode
    # table still shows it; 10 µs is the guard.
    return [
        Target(
            "decode, µs per profile",
            f"≤ {DECODE_MAX_US:.0f} µs",
            f"{ours.us.median:.2f} µs (median of {ours.us.n} runs)",
            _verdict(ours.us.median <= DECODE_MAX_US),
        )
    ]


def _many_keys(rows: Sequence[ManyKeysRow], balances_available: bool) -> list[Target]:
    title = f"{MANY_KEYS_COUNT:,} keys via balances(): peak RSS"
    flat = "peak RSS flat from 10,000 to 100,000 keys"
    if not balances_available:
        reason = "AccountClient has no balances()"
        return [
            Target(title, f"< {MANY_KEYS_MAX_MB:.0f} MB", reason, "N/A"),
            Target(flat, f"within {FLAT_TOLERANCE:.0%}", reason, "N/A"),
        ]
    mine = sorted((r for r in rows if r.mode == "balances"), key=lambda r: r.keys)
    if not mine:
        return []
    small, large = mine[0], mine[-1]
    growth = large.peak_rss_mb / small.peak_rss_mb - 1
    return [
        Target(
            title,
            f"< {MANY_KEYS_MAX_MB:.0f} MB",
            f"{large.peak_rss_mb:.1f} MB at {large.keys:,} keys",
            _verdict(large.peak_rss_mb < MANY_KEYS_MAX_MB and large.errors == 0),
        ),
        Target(
            flat,
            f"within {FLAT_TOLERANCE:.0%}",
            f"{small.peak_rss_mb:.1f} → {large.peak_rss_mb:.1f} MB "
            f"({small.keys:,} → {large.keys:,} keys, {growth:+.1%})",
            _verdict(growth <= FLAT_TOLERANCE),
        ),
    ]


def _retry(rows: Sequence[RetryAccuracy]) -> list[Target]:
    return [
        Target(
            f"{row.label} honoured",
            f"never early, ≤ {RETRY_MAX_LATE_MS:.0f} ms late",
            f"{row.early} early of {row.trials}; late by mean {row.mean_error_ms:.1f} ms, "
            f"max {row.max_error_ms:.1f} ms",
            _verdict(row.early == 0 and row.max_error_ms <= RETRY_MAX_LATE_MS),
        )
        for row in rows
    ]


def evaluate(
    *,
    throughput: Sequence[ThroughputRow],
    decode: Sequence[DecodeRow],
    many_keys: Sequence[ManyKeysRow],
    retry: Sequence[RetryAccuracy],
    balances_available: bool,
) -> list[Target]:
    return [
        *_throughput(throughput, balances_available),
        *_decode(decode),
        *_many_keys(many_keys, balances_available),
        *_retry(retry),
    ]
