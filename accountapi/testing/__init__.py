"""Test tools for accountapi and for apps built on it.

- [`Emulator`][accountapi.testing.Emulator]: the account API on a loopback port, with scripted [`Fault`][accountapi.testing.Fault] s
  and request accounting (``python -m accountapi.testing`` runs it standalone).
- [`ThreadedEmulator`][accountapi.testing.ThreadedEmulator]: the same emulator on a thread of its own, so it answers
  while a sync test (or a web framework's test client) blocks.
- [`VirtualClock`][accountapi.testing.VirtualClock]: pass as ``AccountClient(clock=...)`` to make retry waits and
  cool-downs instant while recording each wait asked for.

The emulator imports nothing else from ``accountapi``, so tests built on it do not
depend on the code under test.
"""

from ._clock import VirtualClock
from ._emulator import Emulator, RequestRecord, default_profile
from ._faults import Fault
from ._threaded import ThreadedEmulator

__all__ = [
    "Emulator",
    "Fault",
    "RequestRecord",
    "ThreadedEmulator",
    "VirtualClock",
    "default_profile",
]
