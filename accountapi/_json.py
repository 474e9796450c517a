"""JSON bytes to Python values: orjson when the ``fast`` extra installed it, else the
standard parser, with the same result either way (tests/test_decode.py runs the edge
cases under both). Shared by the profile decoder and the status mapping, which parses
error bodies; neither needs the other for it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Final

__all__ = ["HAVE_ORJSON", "first_loads", "json_loads"]

try:  # orjson is an optional extra (accountapi[fast]): same results, parsed faster.
    import orjson

    HAVE_ORJSON = True
except ImportError:  # pragma: no cover - exercised when the extra is absent
    HAVE_ORJSON = False


# A run of 19 digits: an integer orjson may not keep exact (beyond 64 bits it returns a
# float where the standard parser returns the int).
_long_integer: Final = re.compile(rb"[0-9]{19}").search


def _loads_with_fallback(data: bytes) -> Any:
    """orjson, but the standard parser for a body with a long integer and for what orjson
    refuses and the standard one allows (``NaN``, ``1e400``, lone surrogates), so the
    result never depends on which parser is installed. For error bodies (``details`` is
    shown to the caller as parsed); the profile path checks its result instead."""
    if _long_integer(data) is not None:
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


json_loads: Callable[[bytes], Any] = _loads_with_fallback if HAVE_ORJSON else json.loads
# The parser tried first on the success path, called directly (no wrapper frame). A body
# it reads differently from the standard parser (an integer beyond 64 bits made a float)
# fails the strict decode and is read again by the standard parser (decode_profile).
first_loads: Callable[[bytes], Any] = orjson.loads if HAVE_ORJSON else json.loads
