"""Test tools for accountapi and for apps built on it.

- [`Emulator`][accountapi.testing.Emulator]: the account API on a loopback port, with scripted [`Fault`][accountapi.testing.Fault] s
  and request accounting (``python -m accountapi.testing`` runs it standalone).
- [`ThreadedEmulator`][accountapi.testing.ThreadedEmulator]: the same emulator on a thread of its own, so it answers
  while a sync test (or a web framework's test client) blocks.
- [`VirtualClock`][accountapi.testing.VirtualClock]: pass as ``AccountClient(clock=...)`` to make retry waits and
  cool-downs instant while recording each wait asked for.

The emulator imports nothing else from ``accountapi``, so tests built on it do not
depend on the code under test. Each name is imported on first use, as in ``accountapi``:
the command line reads its emulator defaults from here without loading aiohttp.
"""

import importlib
from typing import TYPE_CHECKING, Final

__all__ = [
    "Emulator",
    "Fault",
    "RequestRecord",
    "ThreadedEmulator",
    "VirtualClock",
    "default_profile",
]

# The private module each name lives in; the imports under TYPE_CHECKING say the same.
_HOMES: Final[dict[str, str]] = {
    "Emulator": "._emulator",
    "Fault": "._faults",
    "RequestRecord": "._emulator",
    "ThreadedEmulator": "._threaded",
    "VirtualClock": "._clock",
    "default_profile": "._accounts",
}

if TYPE_CHECKING:
    from ._accounts import default_profile as default_profile
    from ._clock import VirtualClock as VirtualClock
    from ._emulator import Emulator as Emulator
    from ._emulator import RequestRecord as RequestRecord
    from ._faults import Fault as Fault
    from ._threaded import ThreadedEmulator as ThreadedEmulator
else:
    # Hidden from type checkers, which would otherwise accept any name imported from here.
    def __getattr__(name: str) -> object:
        """A public name, imported from its module on first use and kept."""
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, __name__), name)
        globals()[name] = value  # later lookups find it without calling __getattr__
        return value


def __dir__() -> list[str]:
    """Every public name, imported yet or not."""
    return sorted(set(globals()) | set(__all__))
