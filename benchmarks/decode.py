"""Decoding alone: µs per profile body, our cattrs converter against the alternatives.

All decoders get the responder's profile body (every field of the spec's User, 445
bytes) and must produce the same Decimal and datetime values. Each is timed with
``timeit``: ``repeat`` runs of ``number`` calls, the decoders taking turns run by run;
the table gives the median run and the range, in µs per call, and a ratio between two
decoders is the median of their run-by-run ratios.
"""

from __future__ import annotations

import importlib.util
import json
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from accountapi import Profile
from accountapi._decode import decode_profile, make_converter

from ._stats import Spread, spread
from .responder import PROFILE_BODY

__all__ = ["DecodeRow", "run_decode"]


@dataclass(frozen=True)
class DecodeRow:
    name: str
    label: str
    us: Spread  # µs per call over the repeats: median (best-worst)
    note: str
    runs: list[float]  # µs per call in each repeat, in order (repeats are interleaved)


def _json_parser_name() -> str:
    """The parser the SDK decodes with: orjson whenever it is installed (the ``fast`` extra)."""
    return "orjson" if importlib.util.find_spec("orjson") is not None else "json"


def _cattrs_on_stdlib_json() -> Callable[[bytes], Any]:
    """The SDK's fast converter fed by ``json.loads``: the decode without the orjson extra."""
    hook = make_converter(detailed_validation=False).get_structure_hook(Profile)

    def decode(body: bytes) -> Any:
        return hook(json.loads(body)["user"], Profile)

    return decode


def _alternatives() -> list[tuple[str, str, Callable[[bytes], Any], str]]:
    """pydantic and msgspec rows, when the ``bench`` extra is installed."""
    try:
        from ._alt_models import MsgspecEnvelope, PydanticEnvelope, PydanticMoneyEnvelope
    except ImportError:
        return []
    import msgspec

    msgspec_decoder = msgspec.json.Decoder(MsgspecEnvelope)
    return [
        (
            "pydantic",
            "pydantic v2 model_validate_json (strict)",
            lambda body: PydanticEnvelope.model_validate_json(body).user,
            "strict mode still takes '1e5' as a Decimal",
        ),
        (
            "pydantic_money",
            "pydantic v2 strict + money-string validator",
            lambda body: PydanticMoneyEnvelope.model_validate_json(body).user,
            "the same money rule as accountapi",
        ),
        (
            "msgspec",
            "msgspec Struct (Decimal, datetime)",
            lambda body: msgspec_decoder.decode(body).user,
            "laxer: takes JSON numbers and 'NaN' as a Decimal",
        ),
    ]


def _candidates() -> list[tuple[str, str, Callable[[bytes], Any], str]]:
    parser = _json_parser_name()
    rows: list[tuple[str, str, Callable[[bytes], Any], str]] = [
        (
            "accountapi",
            f"accountapi decode_profile (cattrs + {parser})",
            decode_profile,
            "strict hooks: money only as a decimal string",
        ),
        (
            "accountapi_stdlib",
            "accountapi converter on json.loads",
            _cattrs_on_stdlib_json(),
            "the same converter without the orjson extra",
        ),
    ]
    rows += _alternatives()
    rows.append(("json_loads", "json.loads alone (no model)", json.loads, "parse only"))
    if parser == "orjson":
        import orjson

        rows.append(("orjson_loads", "orjson.loads alone (no model)", orjson.loads, "parse only"))
    return rows


def _check_same(decoded: Any) -> None:
    """Every model decoder must give the same values as accountapi's."""
    assert decoded.balance_eur == Decimal("9.955000"), decoded
    assert decoded.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), decoded


def run_decode(*, number: int, repeat: int) -> list[DecodeRow]:
    """Time every decoder ``repeat`` times, interleaved, so a busy moment hits them all."""
    candidates = _candidates()
    timers = []
    for name, _, decode, _ in candidates:
        result = decode(PROFILE_BODY)
        if not name.endswith("_loads"):
            _check_same(result)
        timers.append(timeit.Timer(partial(decode, PROFILE_BODY)))
    samples: list[list[float]] = [[] for _ in candidates]
    for _ in range(repeat):
        for timer, mine in zip(timers, samples, strict=True):
            mine.append(timer.timeit(number) / number * 1e6)
    return [
        DecodeRow(name, label, spread(mine), note, mine)
        for (name, label, _, note), mine in zip(candidates, samples, strict=True)
    ]
