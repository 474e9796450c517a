"""accountapi's benchmark suite: the SDK against raw aiohttp, httpx, pydantic and msgspec.

Run ``python -m benchmarks`` (full, a few minutes) or ``python -m benchmarks --quick``
(seconds, for CI). See ``benchmarks/README.md`` for what each number means.
"""
