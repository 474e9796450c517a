"""Value objects that configure a client: timeouts, retries, limits, and the "not given" sentinel.

They import only the error tree and hold no I/O, so they can be built anywhere (module level,
settings files) and shared between clients.
"""

from __future__ import annotations

import enum
import math
import sys
import warnings
from types import FrameType
from typing import Any, Final, Literal

import attrs

from ._exceptions import ConfigurationError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "NOT_GIVEN",
    "Limits",
    "NotGiven",
    "RetryPolicy",
    "Timeout",
    "check_max_retries",
    "resolve_max_retries",
]


class NotGiven(enum.Enum):
    """The type of [`NOT_GIVEN`][accountapi.NOT_GIVEN]: "use the default", as opposed to ``None`` ("no limit")."""

    NOT_GIVEN = enum.auto()

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


def _non_negative_or_none(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(
            f"{attribute.name} must be a number of seconds or None, got {value!r}"
        )
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(
            f"{attribute.name} must be a positive, finite number of seconds or None"
        )


@attrs.frozen(slots=True, kw_only=True)
class Timeout:
    """How long a call may take; ``None`` in any field means "no limit".

    - ``connect``: to open a TCP/TLS connection (waiting for a free pooled connection
      does not count).
    - ``read``: between two reads from the socket once the request is sent.
    - ``attempt``: one HTTP attempt, start to last byte.
    - ``total``: the whole call, retries and waits included (the deadline).

    aiohttp's own default is a single five-minute total; these defaults are meant for a
    request handler that would rather fail than hang. A ``read`` limit no shorter than
    ``attempt`` (as by default) is enforced by the attempt's timer alone, which is cheaper.
    """

    connect: float | None = attrs.field(default=5.0, validator=_non_negative_or_none)
    """Seconds to open a TCP/TLS connection (default 5)."""
    read: float | None = attrs.field(default=15.0, validator=_non_negative_or_none)
    """Seconds between two reads once the request is sent (default 15)."""
    attempt: float | None = attrs.field(default=15.0, validator=_non_negative_or_none)
    """Seconds for one HTTP attempt, start to last byte (default 15)."""
    total: float | None = attrs.field(default=60.0, validator=_non_negative_or_none)
    """Seconds for the whole call, retries and waits included (default 60)."""

    @classmethod
    def coerce(cls, value: Timeout | float | NotGiven | None) -> Timeout:
        """Accept the shorthand forms: a number is the whole call's deadline, ``None`` no limit."""
        if value is NOT_GIVEN:
            return DEFAULT_TIMEOUT
        if value is None:
            return NO_TIMEOUT
        if isinstance(value, Timeout):
            return value
        return cls(total=value)


DEFAULT_TIMEOUT: Final = Timeout()
NO_TIMEOUT: Final = Timeout(connect=None, read=None, attempt=None, total=None)


def _non_negative_int(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{attribute.name} must be a whole number >= 0, got {value!r}")


def _positive_seconds(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{attribute.name} must be a number of seconds, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{attribute.name} must be a positive, finite number of seconds")


def _retries_or_none(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    _non_negative_int(instance, attribute, value)
    warnings.warn(
        "RetryPolicy(max_retries=...) is deprecated: pass max_retries= to the client, "
        "to with_options() or to the call; RetryPolicy shapes the waits",
        DeprecationWarning,
        stacklevel=_user_level(),
    )


def _user_level() -> int:
    """The ``stacklevel`` of the first frame outside this module and attrs, seen from the
    validator that warns: the user's ``RetryPolicy(...)`` line, or their
    ``attrs.evolve(...)`` line (attrs builds the instance there)."""
    frame: FrameType | None = sys._getframe(2)  # the validator's caller: attrs' __init__
    level = 2
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != __name__ and module.partition(".")[0] not in ("attr", "attrs"):
            break
        frame = frame.f_back
        level += 1
    return level


@attrs.frozen(slots=True, kw_only=True)
class RetryPolicy:
    """How long to wait before trying again; how many times is ``max_retries``.

    Only 429, 502, 503 and connections that never reached the service are retried. A wait
    is the service's ``Retry-After`` when it sent one (never shortened), otherwise
    exponential backoff with full jitter: a random time in
    ``[0, min(backoff_max, backoff_initial * 2**(retry - 1))]``. A call gives up at once,
    raising the last error, when the next wait would exceed ``max_wait`` or run past the
    call's ``Timeout.total``.

    How many retries a call makes is set in one place, ``max_retries=`` (on the client,
    [`with_options()`][accountapi.AccountClient.with_options] or the call; default
    `DEFAULT_MAX_RETRIES`). ``RetryPolicy(max_retries=...)`` still works and is
    deprecated; given together with ``max_retries=`` it is a [`ConfigurationError`][accountapi.ConfigurationError].
    """

    max_retries: int | None = attrs.field(default=None, validator=_retries_or_none)
    """Deprecated: pass ``max_retries=`` to the client, ``with_options()`` or the call."""
    backoff_initial: float = attrs.field(default=0.25, validator=_positive_seconds)
    """Ceiling of the first backoff wait, in seconds (default 0.25)."""
    backoff_max: float = attrs.field(default=8.0, validator=_positive_seconds)
    """Ceiling of any backoff wait, in seconds (default 8)."""
    max_wait: float = attrs.field(default=30.0, validator=_positive_seconds)
    """The longest single wait a call accepts, ``Retry-After`` included (default 30 s)."""


DEFAULT_MAX_RETRIES: Final = 4
"""Retries after the first attempt when ``max_retries=`` is not given."""


def resolve_max_retries(max_retries: int | NotGiven, policy: RetryPolicy, default: int) -> int:
    """The one retry count: ``max_retries=`` if given, else the (deprecated)
    ``RetryPolicy.max_retries``, else ``default``; both given is refused."""
    if isinstance(max_retries, NotGiven):
        return default if policy.max_retries is None else policy.max_retries
    if policy.max_retries is not None:
        raise ConfigurationError(
            "max_retries is given twice (max_retries= and RetryPolicy(max_retries=...)); "
            "pass it once, as max_retries="
        )
    return check_max_retries(max_retries)


def check_max_retries(value: object) -> int:
    """``value`` as a retry count, or a [`ConfigurationError`][accountapi.ConfigurationError]."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"max_retries must be a whole number >= 0, got {value!r}")
    return value


DEFAULT_RETRY: Final = RetryPolicy()


def _limit(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"{attribute.name} must be a whole number >= 1 or None, got {value!r}"
        )


@attrs.frozen(slots=True, kw_only=True)
class Limits:
    """Connection and concurrency limits.

    - ``max_connections``: size of the shared connection pool (``None``: unbounded).
    - ``per_key``: requests in flight at once for one API key; the service answers a
      key's eleventh concurrent request with 429, so the default is its maximum, 10.
    - ``max_response_bytes``: a larger body is refused without being read into memory.
    """

    max_connections: int | None = attrs.field(default=256, validator=_limit)
    """Size of the shared connection pool (default 256; ``None``: unbounded)."""
    per_key: int | None = attrs.field(default=10, validator=_limit)
    """Requests in flight at once for one key (default 10, the service's maximum; ``None``: no limit)."""
    max_response_bytes: int = attrs.field(default=1 << 20, validator=_limit)
    """A larger response body is refused unread (default 1 MiB)."""


DEFAULT_LIMITS: Final = Limits()

# Keys checked at once by default: what a remote service 20-80 ms away needs to keep one
# core busy over HTTPS (python -m benchmarks.https_grid; the README's concurrency table).
# Here rather than in the bulk module so the command line's --help can show it cheaply.
DEFAULT_CONCURRENCY: Final = 256
