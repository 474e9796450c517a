"""What one call may ask beyond its key and timeout (`CallOptions`), and the check of
``coalesce`` that the client and the call share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._config import NOT_GIVEN, NotGiven, check_max_retries
from ._exceptions import ConfigurationError
from ._headers import check_user_headers

if TYPE_CHECKING:
    from ._coalesce import SharedRead

__all__ = ["CallOptions", "check_coalesce"]


class CallOptions:
    """What one call asks beyond its key and timeout: another retry count, more headers,
    whether it may join a read in flight (``coalesce``; None: the client's setting).

    Built by a resource only when the caller passes such an option, so the plain call
    carries ``None`` and pays nothing for them. ``shared`` is set only on the options of
    a shared read's own call (see `accountapi._coalesce`).
    """

    __slots__ = ("coalesce", "headers", "max_retries", "shared")

    def __init__(
        self,
        max_retries: int | None,
        headers: tuple[tuple[str, str], ...],
        coalesce: bool | None = None,
        shared: SharedRead[Any] | None = None,
    ) -> None:
        self.max_retries = max_retries
        self.headers = headers
        self.coalesce = coalesce
        self.shared = shared

    @classmethod
    def make(
        cls,
        max_retries: int | NotGiven,
        extra_headers: Mapping[str, str] | None,
        coalesce: bool | NotGiven = NOT_GIVEN,
    ) -> CallOptions:
        """Check the per-call options (a [`ConfigurationError`][accountapi.ConfigurationError] for a bad one)."""
        retries = None if isinstance(max_retries, NotGiven) else check_max_retries(max_retries)
        headers = (
            () if extra_headers is None else check_user_headers(extra_headers, "extra_headers")
        )
        return cls(
            retries, headers, None if isinstance(coalesce, NotGiven) else check_coalesce(coalesce)
        )


def check_coalesce(value: object) -> bool:
    """``coalesce`` must be a bool (a truthy string is a mistake, not a yes)."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"coalesce must be True or False, got {value!r}")
    return value
