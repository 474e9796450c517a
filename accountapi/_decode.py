"""The wire format: JSON bytes in, [`Profile`][accountapi.Profile] out, through one cattrs converter.

Hooks are strict on purpose. Money must arrive as a plain decimal string
(``"9.955000"``, ``"-0.000000"``) and becomes a `Decimal` with every digit
kept; a JSON number, ``null``, an exponent, ``NaN``, padding or a comma is a validation
error, never a silently rounded value. Booleans, integers and strings must have their
JSON type. Unknown fields are ignored so the service can add fields without breaking us.

Two converters share the hooks: a fast one for the success path, and one with detailed
validation that only runs after the fast one failed, to name the offending field
(``user.balance_eur``) in the error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import attrs
import cattrs

from ._exceptions import APIResponseValidationError
from ._json import HAVE_ORJSON, first_loads, json_loads
from ._models import Profile

__all__ = ["decode_profile", "make_converter"]

_MONEY = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_money_shape: Final = _MONEY.fullmatch  # bound once: this runs for every amount decoded


def _money(value: object, _: object) -> Decimal:
    if type(value) is not str or _money_shape(value) is None:
        raise ValueError(f"expected a decimal string like '9.955000', got {_describe(value)}")
    return Decimal(value)


def _timestamp(value: object, _: object) -> datetime:
    if type(value) is not str:
        raise ValueError(f"expected an ISO 8601 timestamp string, got {_describe(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 timestamp, got {_describe(value)}") from None
    # The service documents ISO 8601 in UTC; a timestamp without an offset is read as UTC
    # so that every datetime the SDK returns is timezone-aware.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _strict(kind: type) -> Callable[[object, object], Any]:
    def hook(value: object, _: object) -> Any:
        if type(value) is not kind:
            raise ValueError(f"expected a JSON {_JSON_NAMES[kind]}, got {_describe(value)}")
        return value

    return hook


def _equals(kind: Any) -> Callable[[Any], bool]:
    return lambda candidate: bool(candidate == kind)


def _optional_str(value: object, _: object) -> str | None:
    if value is None or type(value) is str:
        return value
    raise ValueError(f"expected a JSON string or null, got {_describe(value)}")


def _optional_timestamp(value: object, kind: object) -> datetime | None:
    return None if value is None else _timestamp(value, kind)


def _optional_money(value: object, kind: object) -> Decimal | None:
    return None if value is None else _money(value, kind)


def _providers(value: object, _: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is list:
        for item in value:  # a loop, not any(genexpr): the list is short and this is hot
            if type(item) is not str:
                break
        else:
            return tuple(value)
    raise ValueError(f"expected a list of strings or null, got {_describe(value)}")


_JSON_NAMES: Final = {str: "string", bool: "boolean", int: "integer"}


def _describe(value: object) -> str:
    """Name a wire value for an error message, bounded so a huge value cannot flood logs."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


@attrs.frozen(slots=True)
class _ProfileEnvelope:
    """The 200 body of ``GET /v1/account/profile``: ``{"user": {...}}``."""

    user: Profile


def make_converter(*, detailed_validation: bool) -> cattrs.Converter:
    """Build the converter that knows the wire format of every model, with strict hooks."""
    converter = cattrs.Converter(detailed_validation=detailed_validation)
    converter.register_structure_hook(Decimal, _money)
    converter.register_structure_hook(datetime, _timestamp)
    for kind in (str, bool, int):
        converter.register_structure_hook(kind, _strict(kind))
    converter.register_structure_hook_func(_equals(tuple[str, ...]), _providers)
    # Concrete hooks for the optional fields, so the generated Profile function calls
    # them directly instead of going through cattrs' generic Optional dispatch per call.
    optional_hooks: dict[Any, Callable[[object, object], Any]] = {
        str | None: _optional_str,
        datetime | None: _optional_timestamp,
        Decimal | None: _optional_money,
    }
    for union, hook in optional_hooks.items():
        converter.register_structure_hook_func(_equals(union), hook)
    return converter


_fast: Final = make_converter(detailed_validation=False)
_detailed: Final = make_converter(detailed_validation=True)
# Resolve the generated structuring function once; calling it directly skips dispatch.
_structure_user: Final[Callable[[Any, type], Profile]] = _fast.get_structure_hook(Profile)


_NOT_JSON: Final = object()


def _try_structure(data: Any) -> Profile | None:
    """The Profile in a parsed body, or None when it does not match the model."""
    if type(data) is dict:
        user = data.get("user")
        if type(user) is dict:
            try:
                return _structure_user(user, Profile)
            except Exception:
                return None
    return None


def decode_profile(body: bytes, *, status: int = 200, request_id: str | None = None) -> Profile:
    """Decode a profile response body, or raise [`APIResponseValidationError`][accountapi.APIResponseValidationError]."""
    try:
        data = first_loads(body)
    except (ValueError, RecursionError):
        data = _NOT_JSON
    if data is _NOT_JSON:
        try:
            data = json_loads(body)  # what orjson refuses, the standard parser may take
        except (ValueError, RecursionError):
            data = _NOT_JSON
    if data is _NOT_JSON:
        raise APIResponseValidationError(
            "response body is not valid JSON", status=status, request_id=request_id
        ) from None
    profile = _try_structure(data)
    if profile is not None:
        return profile
    if HAVE_ORJSON:
        # What orjson read may differ from the standard parser (an integer beyond 64
        # bits became a float); the decoder's answer must not depend on the parser.
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            pass
        else:
            profile = _try_structure(data)
            if profile is not None:
                return profile
    path, reason = _explain(data)
    raise APIResponseValidationError(
        f"response does not match the profile model: {reason} at {path}",
        status=status,
        path=path,
        request_id=request_id,
    )


def _explain(data: Any) -> tuple[str, str]:
    """Run the detailed converter over a body the fast one rejected; return (path, reason)."""
    if type(data) is not dict:
        return "$", f"expected a JSON object, got {_describe(data)}"
    if "user" not in data:
        return "user", "required field missing"
    try:
        _detailed.structure(data, _ProfileEnvelope)
    except cattrs.BaseValidationError as exc:
        first = cattrs.transform_error(exc, format_exception=_format_leaf)[0]
        reason, _, where = first.rpartition(" @ ")
        return where.removeprefix("$."), reason
    except Exception as exc:
        return "user", str(exc)
    # The fast path failed but the detailed one did not: should not happen; say so plainly.
    return "user", "could not be decoded"


def _format_leaf(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, TypeError) and _type is not None:
        return f"expected an object for {getattr(_type, '__name__', _type)}"
    return f"invalid value ({type(exc).__name__})"
