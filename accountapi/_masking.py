"""Keeping the key out of answers: a server that echoes the key it was sent ("invalid
key dpct_…") must not put it into an exception's message, details, headers or body
excerpt, and from there into logs, traces and CLI output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multidict import CIMultiDict

from ._exceptions import AccountAPIError, APIResponseValidationError
from ._headers import request_id_from
from ._http._transport import RawResponse
from ._keys import Credential

__all__ = ["refused_echo", "without_key"]


def without_key(raw: RawResponse, key: Credential) -> RawResponse:
    """An error answer with every copy of the key in its body or headers replaced by the
    key's hint: a server that echoes the key it was sent ("invalid key dpct_…") must
    not put it into an exception's message, details, headers or body excerpt, and from
    there into logs, traces and CLI output. Runs only for error statuses."""
    secret = key.value
    encoded = secret.encode("utf-8", "surrogateescape")
    body = raw.body
    leaked = encoded in body
    if leaked:
        body = body.replace(encoded, key.hint.encode())
    headers = raw.headers
    if any(secret in value for value in headers.values()):
        leaked = True
        headers = CIMultiDict(
            (name, value.replace(secret, key.hint)) for name, value in headers.items()
        )
    if not leaked:
        return raw
    return RawResponse(raw.status, headers, body, raw.truncated, raw.problem)


def refused_echo(parse: Callable[[RawResponse], Any], masked: RawResponse) -> AccountAPIError:
    """The validation error for a 2xx answer that echoed the key, decoded again from
    ``masked`` (`without_key()`'s copy), so its message and request id show the hint."""
    try:
        parse(masked)
    except APIResponseValidationError as exc:
        return exc
    return APIResponseValidationError(  # masking made it decode: refused all the same
        "response body not accepted: it holds the API key",
        status=masked.status,
        request_id=request_id_from(masked.headers),
    )
