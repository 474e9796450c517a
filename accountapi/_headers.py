"""Pure parsing of the response headers the SDK acts on, and checking of the request
headers a user adds. No I/O, no clock of its own."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final

from ._exceptions import ConfigurationError

__all__ = [
    "MAX_RETRY_AFTER",
    "RESERVED_HEADERS",
    "check_user_headers",
    "parse_retry_after",
    "request_id_from",
]

# A wait beyond a day is not a rate-limit hint but a broken header: fall back to backoff.
MAX_RETRY_AFTER: Final = 86_400.0
_SECONDS: Final = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,6})?")


def _delta_seconds(value: str) -> float | None:
    if _SECONDS.fullmatch(value) is None:
        return None
    seconds = float(value)
    return seconds if seconds <= MAX_RETRY_AFTER else None


def _http_date(value: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin; still UTC.
        return None
    try:
        wait = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(wait) or wait > MAX_RETRY_AFTER:
        return None
    return max(wait, 0.0)


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of ``name``: a repeated header is several values, not just the first."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, ()))
    value = headers.get(name)
    return [] if value is None else [value]


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the service asked us to wait, or ``None`` when it asked nothing usable.

    Reads ``Retry-After`` as delta-seconds or an HTTP-date (against ``now``, Unix seconds)
    and ``retry-after-ms``. Every valid value counts and the longest wins, so we are never
    early: both headers, a header sent twice, or a proxy's folded ``"5, 120"``. Malformed
    values ("", "inf", "-10", absurd dates, 40 digits) give ``None``, never an exception,
    and the caller falls back to backoff.
    """
    waits: list[float] = []
    for raw in _values(headers, "Retry-After"):
        raw = raw.strip()
        if raw[:1].isalpha():  # an HTTP-date, whose own comma is not a list separator
            seconds = _http_date(raw, now)
            if seconds is not None:
                waits.append(seconds)
            continue
        for part in raw.split(","):
            seconds = _delta_seconds(part.strip())
            if seconds is not None:
                waits.append(seconds)
    for raw in _values(headers, "retry-after-ms"):
        for part in raw.split(","):
            millis = _delta_seconds(part.strip())
            if millis is not None:
                waits.append(millis / 1000.0)
    return max(waits) if waits else None


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The service's request id from the ``X-Request-Id`` header, if any."""
    value = headers.get("X-Request-Id")
    return value[:200] if value else None


# Headers a user's default_headers= or extra_headers= may not set: the SDK's own (the
# key's Authorization, the encodings it can decode, its User-Agent), and those that
# belong to the connection or the message's framing rather than to the request.
RESERVED_HEADERS: Final = frozenset(
    {
        "authorization",
        "accept-encoding",
        "user-agent",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "expect",
        "proxy-authorization",
        "cookie",
    }
)
# RFC 9110 token characters for a field name; a value is visible ASCII, space and tab
# (no CR/LF or other control character that could end the header early, and nothing
# non-ASCII: U+0080..U+009F are C1 controls, and aiohttp would send the rest UTF-8
# encoded, which a server reading the field as Latin-1 obs-text decodes differently).
_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}")
_VALUE: Final = re.compile(r"[\t\x20-\x7e]{0,8192}")


def check_user_headers(headers: object, argument: str) -> tuple[tuple[str, str], ...]:
    """The headers a user asked to send, checked: names are tokens, values one line of
    visible ASCII, none of `RESERVED_HEADERS`. Anything else is a [`ConfigurationError`][accountapi.ConfigurationError]
    naming ``argument`` and the header (never its value, which may be a secret)."""
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"{argument} must be a mapping of header names to str values, "
            f"not {type(headers).__name__}"
        )
    checked: list[tuple[str, str]] = []
    for name, value in headers.items():
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            shown = repr(name)[:60] if isinstance(name, str) else type(name).__name__
            raise ConfigurationError(f"{argument}: {shown} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise ConfigurationError(
                f"{argument} may not set {name}: the SDK sets Authorization, "
                "Accept-Encoding and User-Agent itself, and connection headers belong "
                "to aiohttp"
            )
        if not isinstance(value, str) or _VALUE.fullmatch(value) is None:
            raise ConfigurationError(
                f"{argument}[{name!r}] must be a str of one line of visible ASCII (no CR, "
                "LF or other control characters, nothing non-ASCII, at most 8192 characters)"
            )
        checked.append((name, value))
    return tuple(checked)
