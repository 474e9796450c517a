"""What a call returns when its caller asks for the answer as well as the value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["APIResponse"]

T = TypeVar("T")


@attrs.frozen(slots=True, kw_only=True)
class APIResponse(Generic[T]):
    """A successful call's value with the HTTP answer it was decoded from.

    Returned by ``client.account.with_response.profile()`` and
    ``.dismiss_notifications()``: the same call, retries and errors as the plain method,
    which stays as fast as it was. Quote ``request_id`` in a support ticket.
    """

    parsed: T
    """The value the plain method returns (a [`Profile`][accountapi.Profile], or ``None``)."""
    status: int
    """The HTTP status of the answer (2xx)."""
    headers: Mapping[str, str] = attrs.field(repr=False, hash=False)
    """The answer's headers, read-only and case-insensitive (``headers["x-request-id"]``);
    not part of the hash. An ``APIResponse`` pickles and copies (headers included)."""
    request_id: str | None
    """The service's ``X-Request-Id`` for this answer, if it sent one."""
    attempts: int
    """Requests sent for the call, the answered one included (1 without retries)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # aiohttp's read-only CIMultiDictProxy does not pickle (nor deep-copy): send a
        # CIMultiDict, made read-only again on arrival.
        return (
            _rebuild,
            (self.parsed, self.status, CIMultiDict(self.headers), self.request_id, self.attempts),
        )


def _rebuild(
    parsed: T, status: int, headers: CIMultiDict[str], request_id: str | None, attempts: int
) -> APIResponse[T]:
    return APIResponse(
        parsed=parsed,
        status=status,
        headers=CIMultiDictProxy(headers),
        request_id=request_id,
        attempts=attempts,
    )
