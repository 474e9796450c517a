"""Faults the emulator can inject: plain data, interpreted by the emulator.

A `Fault` says *what* should go wrong with one response (a status, a broken body, a
dropped connection); `accountapi.testing._emulator` decides *how* to do it on the wire.
Build them with the classmethod factories, never with the constructor.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import math
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ERROR_CODES", "Fault", "error_code"]

#: The machine code the service documents for each status. 403 has several codes; the
#: emulator picks `account_suspended`. 405 is the emulator's own (the spec has none).
ERROR_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "auth_invalid",
    402: "credit_insufficient",
    403: "account_suspended",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "unprocessable",
    429: "rate_limited",
    451: "unavailable_for_legal_reasons",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}


def error_code(status: int) -> str:
    """The documented machine code for `status`, or a generic `http_<status>` otherwise."""
    return ERROR_CODES.get(status, f"http_{status}")


def _format_retry_after(value: float | str | _dt.datetime) -> str:
    """Render a Retry-After value the way a server would put it on the wire."""
    if isinstance(value, str):
        return value  # verbatim, so tests can send malformed values on purpose
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("retry_after datetime must be timezone-aware")
        return email.utils.format_datetime(value.astimezone(_dt.UTC), usegmt=True)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"retry_after must be int, float, str or datetime, not {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"retry_after must be finite, not {value!r}")
        if value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def _header_pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Freeze extra response headers into a hashable tuple of pairs."""
    if headers is None:
        return ()
    return tuple((str(name), str(value)) for name, value in headers.items())


def _check_seconds(seconds: float) -> float:
    """Reject negative or non-finite durations early, where the test wrote them."""
    if isinstance(seconds, bool) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, not {seconds!r}")
    return float(seconds)


@attrs.frozen(kw_only=True)
class Fault:
    """One injected misbehaviour for a single response (or every response of a key).

    `name` is the factory that built it; the other fields are that factory's
    parameters. The emulator reads them; nothing here touches the network.
    """

    name: str
    """The factory that built it (``"status"``, ``"rate_limited"``, ...)."""
    code: int | None = None
    """The HTTP status to answer with, for faults that answer."""
    error: str | None = None
    """The body's ``error`` field, where the fault sets one."""
    message: str | None = None
    """The body's ``message`` field, where the fault sets one."""
    details: Any = attrs.field(default=None, hash=False)
    """The body's ``details`` field, where the fault sets one."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers."""
    data: bytes | None = None
    """A raw body sent as is, instead of JSON."""
    content_type: str | None = None
    """The ``Content-Type`` of a raw body."""
    seconds: float | None = None
    """A delay or stall, in seconds, for faults that wait."""
    n_bytes: int | None = None
    """How many bytes to send before cutting, for truncating faults."""
    location: str | None = None
    """The ``Location`` of a redirect."""
    chunked: bool = False
    """Whether the body is sent with chunked transfer encoding."""

    @classmethod
    def status(
        cls,
        code: int,
        *,
        error: str | None = None,
        message: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | str | _dt.datetime | None = None,
    ) -> Fault:
        """A JSON error response with status `code` and the service's error body shape."""
        if not 400 <= code <= 599:
            raise ValueError(f"Fault.status() needs a 4xx or 5xx code, not {code!r}")
        pairs = _header_pairs(headers)
        if retry_after is not None:
            pairs += (("Retry-After", _format_retry_after(retry_after)),)
        return cls(
            name="status",
            code=code,
            error=error if error is not None else error_code(code),
            message=message,
            details=details,
            headers=pairs,
        )

    @classmethod
    def rate_limited(cls, retry_after: float | str | _dt.datetime | None = 1) -> Fault:
        """A scripted 429 `rate_limited` with a Retry-After header (omitted when None)."""
        base = cls.status(
            429, message="too many concurrent requests (max 10)", retry_after=retry_after
        )
        return attrs.evolve(base, name="rate_limited")

    @classmethod
    def rate_limited_ms(cls, ms: float) -> Fault:
        """A 429 carrying only a `retry-after-ms` header, as some gateways send."""
        base = cls.status(
            429,
            message="too many concurrent requests (max 10)",
            headers={"retry-after-ms": _format_retry_after(ms)},
        )
        return attrs.evolve(base, name="rate_limited_ms")

    @classmethod
    def html(cls, status: int = 502) -> Fault:
        """An nginx-style HTML error page, as a gateway in front of the API would send."""
        return cls(name="html", code=status, content_type="text/html")

    @classmethod
    def empty(cls, status: int = 503) -> Fault:
        """A response with the given status and an empty body."""
        return cls(name="empty", code=status, data=b"")

    @classmethod
    def body(
        cls, data: bytes, *, status: int = 200, content_type: str = "application/json"
    ) -> Fault:
        """Exactly these body bytes, for malformed or surprising payloads."""
        return cls(name="body", code=status, data=bytes(data), content_type=content_type)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait `seconds` (counted as in flight), then answer normally."""
        return cls(name="delay", seconds=_check_seconds(seconds))

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection before sending a single byte."""
        return cls(name="drop")

    @classmethod
    def truncated(cls) -> Fault:
        """A 200 whose Content-Length promises the whole body but only half arrives."""
        return cls(name="truncated", code=200)

    @classmethod
    def reset_mid_body(cls) -> Fault:
        """A chunked 200 whose connection closes after the first chunk."""
        return cls(name="reset_mid_body", code=200)

    @classmethod
    def stall_body(cls, seconds: float) -> Fault:
        """Send headers and part of the body, then stall `seconds` before the rest."""
        return cls(name="stall_body", code=200, seconds=_check_seconds(seconds))

    @classmethod
    def large_body(cls, n_bytes: int, *, chunked: bool = False) -> Fault:
        """A valid 200 profile body padded with JSON whitespace to `n_bytes` bytes.

        `chunked=True` sends it without a Content-Length, in 64 KiB chunks, so the client
        cannot know the size up front.
        """
        if n_bytes < 0:
            raise ValueError(f"n_bytes must be >= 0, not {n_bytes!r}")
        return cls(name="large_body", code=200, n_bytes=n_bytes, chunked=chunked)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Fault:
        """A 3xx response pointing at `location`."""
        if not 300 <= status <= 399:
            raise ValueError(f"Fault.redirect() needs a 3xx status, not {status!r}")
        return cls(name="redirect", code=status, location=location)
