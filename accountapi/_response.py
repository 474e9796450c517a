"""What a call returns when its caller asks for the answer as well as the value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

import attrs

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
    headers: Mapping[str, str] = attrs.field(repr=False)
    """The answer's headers, read-only and case-insensitive (``headers["x-request-id"]``)."""
    request_id: str | None
    """The service's ``X-Request-Id`` for this answer, if it sent one."""
    attempts: int
    """Requests sent for the call, the answered one included (1 without retries)."""
