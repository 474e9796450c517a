"""Benchmark API keys: deterministic, distinct, shaped like the service's (``dpct_`` + 32)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

__all__ = ["SINGLE_KEY", "bench_key", "bench_keys"]

SINGLE_KEY: Final = "dpct_" + "benchmarkSingleKey0123456789abcd"


def bench_key(prefix: str, index: int) -> str:
    """Key number ``index`` of a family; distinct in its last four characters below 10,000."""
    return f"dpct_{prefix}{index:0{32 - len(prefix)}d}"


def bench_keys(prefix: str, count: int) -> Iterator[str]:
    """A lazy stream of keys, so the caller's memory does not grow with ``count``."""
    return (bench_key(prefix, i) for i in range(count))
