"""Pure mapping from an HTTP answer to the SDK's exception, with no I/O.

The service documents a JSON error object (``error``, ``message``, ``details``,
``request_id``) but a gateway may answer 502/503 with HTML or nothing; the class then
still follows the status, and the message carries a short, bounded excerpt of the body.
"""

from __future__ import annotations

import http
import re
from collections.abc import Mapping
from typing import Any, Final

from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnavailableForLegalReasonsError,
    UnexpectedRedirectError,
    UnprocessableEntityError,
)
from ._headers import parse_retry_after, request_id_from
from ._json import json_loads

__all__ = ["STATUS_ERRORS", "error_for_status", "excerpt"]

STATUS_ERRORS: Final[Mapping[int, type[APIStatusError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    451: UnavailableForLegalReasonsError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
}

EXCERPT_CHARS: Final = 200
_MAX_FIELD: Final = 1000
_SPACE: Final = re.compile(r"\s+")


def error_class(status: int) -> type[APIStatusError]:
    """The exception class for a non-2xx status."""
    cls = STATUS_ERRORS.get(status)
    if cls is not None:
        return cls
    if 300 <= status < 400:
        return UnexpectedRedirectError
    if 500 <= status < 600:
        return InternalServerError
    return APIStatusError  # 1xx, other 4xx, and statuses HTTP does not define (600-999)


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, printable piece of a body for an error message."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = _SPACE.sub(" ", text).strip()
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reason(status: int) -> str:
    """The status's reason phrase ("Unauthorized"), for an error object without a message."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "no message in the error body"


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value[:_MAX_FIELD]
    return None


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    truncated: bool = False,
    problem: str | None = None,
) -> APIStatusError:
    """Build the exception for a non-2xx response; ``now`` is Unix time for HTTP-date waits.

    ``truncated`` says the body was larger than the client reads (``body`` is its start);
    ``problem`` why it could not be read at all. The class follows the status either way.
    """
    cls = error_class(status)
    data: Any = None
    if body and not truncated:
        try:
            data = json_loads(body)
        except (ValueError, RecursionError):
            data = None
    code = message = request_id = None
    details: Any = None
    body_excerpt: str | None = None
    if isinstance(data, dict):
        code = _text(data.get("error"))
        message = _text(data.get("message"))
        request_id = _text(data.get("request_id"))
        details = data.get("details")
    if code is None and message is None:
        body_excerpt = excerpt(body) if body else ""
    request_id = request_id or request_id_from(headers)
    if message is None:
        if 300 <= status < 400:
            message = "redirect not followed"
            location = headers.get("Location")
            if location:
                message += f" (Location: {excerpt(location.encode(), 120)})"
        elif problem is not None:
            message = f"unreadable response body: {problem}"
        elif truncated:
            message = "response body larger than Limits.max_response_bytes; not read"
        elif body_excerpt:
            message = f"unexpected response body: {body_excerpt}"
        elif code is not None:  # an error object with a code but no message
            message = _reason(status)
        else:
            message = "empty response body"
    return cls(
        message,
        status=status,
        code=code,
        details=details,
        request_id=request_id,
        headers=headers,
        retry_after=parse_retry_after(headers, now),
        body_excerpt=body_excerpt,
    )
