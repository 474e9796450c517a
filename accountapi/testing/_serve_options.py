"""How the emulator is served (`ServeOptions`), apart from the emulator itself.

Both command lines read their defaults from `DEFAULTS` to build their ``--help``; this
module imports neither aiohttp nor the emulator, so ``accountapi --help`` loads neither.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["DEFAULTS", "ServeOptions"]


@attrs.frozen(kw_only=True)
class ServeOptions:
    """How to serve; both command lines take their defaults from here."""

    host: str = "127.0.0.1"
    port: int = 8080
    keys: int = 1000
    keys_file: str = "emulator-keys.txt"  # "-": one key per line on stdout
    latency: float = 0.0
    mix: bool = False
    seed: int = 2026


DEFAULTS: Final = ServeOptions()
