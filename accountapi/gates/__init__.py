"""Key gates: the per-key concurrency limit and the shared cool-down after a 429.

Everything needed to choose a gate or write one:

- [`MemoryKeyGate`][accountapi.gates.MemoryKeyGate]: the in-process default (``AccountClient`` builds one with
  ``Limits.per_key`` when no ``key_gate=`` is given).
- [`RedisKeyGate`][accountapi.gates.RedisKeyGate]: the limit and cool-downs shared across processes through Redis
  (the ``redis`` extra), passed as ``AccountClient(key_gate=RedisKeyGate(...))``.
- [`KeyGate`][accountapi.gates.KeyGate]: the protocol a gate of your own implements; its ``acquire`` raises
  [`GateTimeout`][accountapi.gates.GateTimeout] or [`KeyCoolingDown`][accountapi.gates.KeyCoolingDown], which the client turns into
  [`APITimeoutError`][accountapi.APITimeoutError] and [`RateLimitError`][accountapi.RateLimitError].
- [`MAX_COOL_DOWN`][accountapi.gates.MAX_COOL_DOWN]: the longest a gate holds a key back after one 429.
- [`Clock`][accountapi.gates.Clock]: the time source the SDK and its gates read (``clock=``);
  [`accountapi.testing.VirtualClock`][accountapi.testing.VirtualClock] implements it for tests.

These names lived at the top level of ``accountapi`` before 0.2; importing them from
there still works, with a `DeprecationWarning`.
"""

from accountapi._clock import Clock

from ._memory import MemoryKeyGate
from ._protocol import MAX_COOL_DOWN, GateTimeout, KeyCoolingDown, KeyGate
from ._redis import RedisKeyGate

__all__ = [
    "MAX_COOL_DOWN",
    "Clock",
    "GateTimeout",
    "KeyCoolingDown",
    "KeyGate",
    "MemoryKeyGate",
    "RedisKeyGate",
]
