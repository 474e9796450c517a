"""Names that left the top level of ``accountapi`` for a namespace of their own.

``accountapi.__getattr__`` serves them under their old name with a
`DeprecationWarning` until 1.0; they are not in ``accountapi.__all__`` or ``dir()``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Final

# Old top-level name -> the public module that is its home now (under the same name).
MOVED: Final[dict[str, str]] = {
    "MAX_COOL_DOWN": "accountapi.gates",
    "Clock": "accountapi.gates",
    "GateTimeout": "accountapi.gates",
    "KeyCoolingDown": "accountapi.gates",
    "KeyGate": "accountapi.gates",
    "MemoryKeyGate": "accountapi.gates",
    "RedisKeyGate": "accountapi.gates",
}


def moved(name: str) -> object:
    """The object ``accountapi.<name>`` was, with a warning; AttributeError for any other name."""
    home = MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'accountapi' has no attribute {name!r}")
    warnings.warn(
        f"accountapi.{name} is deprecated: import it from {home} "
        f"(`from {home} import {name}`); the old name goes away in 1.0",
        DeprecationWarning,
        stacklevel=3,  # past this function and accountapi.__getattr__: the user's line
    )
    return getattr(importlib.import_module(home), name)
