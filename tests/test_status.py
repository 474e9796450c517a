"""Status mapping: every documented status to its class, whatever the body looks like."""

from __future__ import annotations

import json

import pytest
from multidict import CIMultiDict

from accountapi import (
    AccountClient,
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
from accountapi._status import EXCERPT_CHARS, error_for_status
from accountapi.testing import Emulator, Fault, VirtualClock

DOCUMENTED = [
    (400, BadRequestError, "bad_request"),
    (401, AuthenticationError, "auth_invalid"),
    (402, PaymentRequiredError, "credit_insufficient"),
    (403, PermissionDeniedError, "account_suspended"),
    (404, NotFoundError, "not_found"),
    (409, ConflictError, "conflict"),
    (413, PayloadTooLargeError, "payload_too_large"),
    (422, UnprocessableEntityError, "unprocessable"),
    (429, RateLimitError, "rate_limited"),
    (451, UnavailableForLegalReasonsError, "unavailable_for_legal_reasons"),
    (500, InternalServerError, "internal_error"),
    (502, BadGatewayError, "bad_gateway"),
    (503, ServiceUnavailableError, "service_unavailable"),
]


@pytest.mark.parametrize(("status", "cls", "code"), DOCUMENTED)
async def test_every_status_maps_over_the_wire(
    emulator: Emulator, status: int, cls: type[APIStatusError], code: str
) -> None:
    """Each documented status arrives as its own class with code, message and request id."""
    key = emulator.add_key(fault=Fault.status(status, message=f"scripted {status}"))
    async with AccountClient(
        key, base_url=emulator.url, clock=VirtualClock(), max_retries=0
    ) as client:
        with pytest.raises(cls) as info:
            await client.account.profile()
    err = info.value
    assert type(err) is cls
    assert err.status == status
    assert err.code == code
    assert err.message == f"scripted {status}"
    assert err.request_id is not None
    assert err.request_id.startswith("req_")
    assert err.request_id == err.headers["X-Request-Id"]
    assert err.request_id in str(err)
    assert err.attempts == 1


async def test_details_are_kept(emulator: Emulator) -> None:
    """The free-form details of an error body reach the exception."""
    key = emulator.add_key(fault=Fault.status(422, details={"field": "x", "why": [1, 2]}))
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(UnprocessableEntityError) as info:
            await client.account.profile()
    assert info.value.details == {"field": "x", "why": [1, 2]}


@pytest.mark.parametrize(
    ("status", "cls"), [(502, BadGatewayError), (503, ServiceUnavailableError)]
)
async def test_gateway_html_keeps_the_class(
    emulator: Emulator, status: int, cls: type[APIStatusError]
) -> None:
    """An HTML gateway page still gives the status's class, with a short excerpt and no code."""
    key = emulator.add_key(fault=Fault.html(status))
    async with AccountClient(key, base_url=emulator.url, max_retries=0) as client:
        with pytest.raises(cls) as info:
            await client.account.profile()
    err = info.value
    assert err.code is None
    assert err.body_excerpt is not None
    assert "<html>" in err.body_excerpt.lower()
    assert len(err.body_excerpt) <= EXCERPT_CHARS
    assert "\n" not in str(err)


async def test_empty_gateway_body(emulator: Emulator) -> None:
    """An empty 503 body gives ServiceUnavailableError saying the body was empty."""
    key = emulator.add_key(fault=Fault.empty(503))
    async with AccountClient(key, base_url=emulator.url, max_retries=0) as client:
        with pytest.raises(ServiceUnavailableError) as info:
            await client.account.profile()
    assert info.value.message == "empty response body"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (418, APIStatusError),
        (504, InternalServerError),
        (599, InternalServerError),
        (600, APIStatusError),
        (999, APIStatusError),
        (101, APIStatusError),
    ],
)
def test_undocumented_statuses(status: int, cls: type[APIStatusError]) -> None:
    """Other 4xx give APIStatusError; other 5xx InternalServerError (not retried); a status
    HTTP does not define (600-999, or 1xx as a final answer) APIStatusError."""
    err = error_for_status(
        status, CIMultiDict(), b'{"error": "teapot", "message": "short and stout"}', now=0
    )
    assert type(err) is cls
    assert err.code == "teapot"
    assert not err.retryable


def test_huge_non_json_body_is_bounded() -> None:
    """A megabyte of garbage gives a bounded, single-line excerpt."""
    body = ("x\n\t\x00" * 300_000).encode()
    err = error_for_status(500, CIMultiDict(), body, now=0)
    assert err.body_excerpt is not None
    assert len(err.body_excerpt) <= EXCERPT_CHARS
    assert len(str(err)) < 400
    assert "\n" not in str(err)


def test_json_but_not_an_object() -> None:
    """A JSON array body is treated as unexpected, keeping the class."""
    err = error_for_status(400, CIMultiDict(), json.dumps([1, 2]).encode(), now=0)
    assert type(err) is BadRequestError
    assert err.code is None
    assert err.body_excerpt == "[1, 2]"


def test_retry_after_attached() -> None:
    """A 429's Retry-After is parsed onto the error."""
    err = error_for_status(429, CIMultiDict({"Retry-After": "3"}), b"{}", now=0)
    assert isinstance(err, RateLimitError)
    assert err.retry_after == 3.0
    assert err.retryable


async def test_redirect_is_an_error(emulator: Emulator) -> None:
    """A 3xx is raised as UnexpectedRedirectError naming the Location, never followed."""
    key = emulator.add_key(fault=Fault.redirect("https://elsewhere.example/v1/account/profile"))
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(UnexpectedRedirectError) as info:
            await client.account.profile()
    assert info.value.status == 302
    assert "elsewhere.example" in info.value.message
    assert emulator.attempts(key) == 1


# -- each rule of the mapping, pinned both ways (mutation testing found them unpinned) --


@pytest.mark.parametrize(
    ("status", "cls"),
    [(300, UnexpectedRedirectError), (399, UnexpectedRedirectError), (400, BadRequestError)],
)
def test_the_redirect_range_starts_at_300_and_ends_before_400(
    status: int, cls: type[APIStatusError]
) -> None:
    """300 and 399 are redirects (class and message); 400 is not."""
    err = error_for_status(status, CIMultiDict({"Location": "https://elsewhere.test/"}), b"", now=0)
    assert type(err) is cls
    assert (err.message.startswith("redirect not followed")) is (status < 400)


@pytest.mark.parametrize("field", ["error", "message", "request_id"])
@pytest.mark.parametrize(("length", "kept"), [(999, 999), (1000, 1000), (1001, 1000), (5000, 1000)])
def test_code_message_and_request_id_are_capped_at_1000_characters(
    field: str, length: int, kept: int
) -> None:
    """A body's error code, message and request id are kept up to 1,000 characters each."""
    body = {"error": "x", "message": "y", "request_id": "z", field: "a" * length}
    err = error_for_status(500, CIMultiDict(), json.dumps(body).encode(), now=0)
    value = {"error": err.code, "message": err.message, "request_id": err.request_id}[field]
    assert value == "a" * kept


@pytest.mark.parametrize(
    ("body", "excerpted"),
    [
        ({"error": "auth_invalid"}, False),
        ({"message": "no such key"}, False),
        ({"error": "auth_invalid", "message": "no such key"}, False),
        ({"detail": "something else"}, True),
    ],
)
def test_the_body_is_excerpted_only_when_it_has_neither_code_nor_message(
    body: dict[str, str], excerpted: bool
) -> None:
    """An error object with a code or a message speaks for itself; any other body is
    shown as an excerpt."""
    err = error_for_status(401, CIMultiDict(), json.dumps(body).encode(), now=0)
    assert (err.body_excerpt is not None) is excerpted


def test_a_code_without_a_message_names_the_status_not_an_empty_body() -> None:
    """{"error": "auth_invalid"} alone reads "401 auth_invalid: Unauthorized", never
    "empty response body" (the body was not empty)."""
    err = error_for_status(401, CIMultiDict(), b'{"error":"auth_invalid"}', now=0)
    assert str(err) == "401 auth_invalid: Unauthorized"
    odd = error_for_status(599, CIMultiDict(), b'{"error":"odd"}', now=0)
    assert odd.message == "no message in the error body"


def test_the_bodys_request_id_wins_over_the_headers() -> None:
    """The request id in the error body is the one kept; the header's only without one."""
    headers = CIMultiDict({"X-Request-Id": "req_header"})
    with_body = error_for_status(500, headers, b'{"error":"e","request_id":"req_body"}', now=0)
    without = error_for_status(500, headers, b'{"error":"e"}', now=0)
    assert (with_body.request_id, without.request_id) == ("req_body", "req_header")
