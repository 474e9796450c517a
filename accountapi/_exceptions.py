"""Every exception accountapi raises, rooted at [`AccountAPIError`][accountapi.AccountAPIError].

The tree, so a caller can choose how broadly to catch::

    AccountAPIError
    ├── ConfigurationError           bad arguments: no key, malformed key, insecure URL
    │   └── MalformedAPIKeyError     empty key, or whitespace, control or non-ASCII in it; nothing sent
    ├── ClientStateError             client closed, or used from a second event loop
    ├── APIConnectionError           the service could not be reached or the connection broke
    │   └── APITimeoutError          an attempt or the whole call ran out of time
    ├── APIResponseValidationError   a 2xx whose body is not the documented JSON
    └── APIStatusError               the service answered with a non-2xx status
        ├── UnexpectedRedirectError      3xx (redirects are never followed)
        ├── BadRequestError              400
        ├── AuthenticationError          401
        ├── PaymentRequiredError         402
        ├── PermissionDeniedError        403
        ├── NotFoundError                404
        ├── ConflictError                409
        ├── PayloadTooLargeError         413
        ├── UnprocessableEntityError     422
        ├── RateLimitError               429 (retried)
        ├── UnavailableForLegalReasonsError 451
        └── InternalServerError          500 and any 5xx not listed below
            ├── BadGatewayError          502 (retried)
            └── ServiceUnavailableError  503 (retried)

No exception here holds the API key, the request headers, or an aiohttp object whose
``repr`` would print them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AccountAPIError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "ClientStateError",
    "ConfigurationError",
    "ConflictError",
    "InternalServerError",
    "MalformedAPIKeyError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnavailableForLegalReasonsError",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
]

_EMPTY_HEADERS: Mapping[str, str] = {}


class AccountAPIError(Exception):
    """The root of every error the SDK raises.

    ``attempts`` is how many HTTP attempts the call made before giving up (0 when it
    failed before sending anything); ``key_hint`` names the key as ``dpct_…abcd``.
    ``retryable`` says whether the SDK treats the failure as transient (it has already
    retried it as far as the retry policy allowed). ``retry_budget_exhausted`` is true
    when a retry was due but the client's retry budget was spent, so the call ended
    with this error at once (see [`RetryBudget`][accountapi.RetryBudget]).
    """

    message: str
    """The error's message (never holds the key)."""
    attempts: int
    """HTTP attempts the call made before giving up (0 when it failed before sending)."""
    key_hint: str | None
    """The key the call used, as a hint (``dpct_…abcd``), or ``None``."""
    retryable: bool = False
    """Whether the SDK treats the failure as transient (it has already retried it)."""
    retry_budget_exhausted: bool = False
    """True when a retry was due but the client's retry budget was spent."""

    def __init__(self, message: str, *, attempts: int = 0, key_hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.attempts = attempts
        self.key_hint = key_hint

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default Exception pickling;
        # rebuild from the instance dict so errors can cross process boundaries.
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[AccountAPIError], state: dict[str, Any]) -> AccountAPIError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, state.get("message", ""))
    exc.__dict__.update(state)
    return exc


class ConfigurationError(AccountAPIError, ValueError):
    """The client or call was given arguments it cannot work with (also a ``ValueError``)."""


class MalformedAPIKeyError(ConfigurationError):
    """An API key that could never be valid: empty, or with whitespace, control or non-ASCII characters.

    Raised before any request, so the key never reaches a socket or a header, and nothing
    was answered: it is not an [`APIStatusError`][accountapi.APIStatusError] (no ``status``). ``code`` is
    ``"key_malformed"``. A web backend answers 401 for it as for an
    [`AuthenticationError`][accountapi.AuthenticationError]: ``except (AuthenticationError, MalformedAPIKeyError)``.
    """

    code: str = "key_malformed"


class ClientStateError(AccountAPIError):
    """The client cannot be used in its present state (closed, or bound to another event loop)."""


class APIConnectionError(AccountAPIError):
    """The service could not be reached, or the connection failed before a full response.

    ``request_sent`` is ``False`` when the failure happened before the request could reach
    the service (connection refused, DNS failure, connect timeout); only those are retried,
    since anything else may already have been acted on. TLS failures are never retried.
    """

    request_sent: bool
    """False when the failure came before the request could reach the service."""

    def __init__(
        self,
        message: str,
        *,
        request_sent: bool,
        retryable: bool | None = None,
        attempts: int = 0,
        key_hint: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, key_hint=key_hint)
        self.request_sent = request_sent
        self.retryable = (not request_sent) if retryable is None else retryable


class APITimeoutError(APIConnectionError):
    """An attempt, or the whole call across retries, took longer than its timeout."""


class APIResponseValidationError(AccountAPIError):
    """A 2xx response whose body is not JSON or does not match the documented model.

    ``path`` names the offending field, for example ``user.balance_eur``.
    """

    status: int
    """The HTTP status of the answer (2xx)."""
    path: str | None
    """The offending field, such as ``user.balance_eur``, when one is known."""
    request_id: str | None
    """The service's ``X-Request-Id`` for the answer, if it sent one."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        path: str | None = None,
        request_id: str | None = None,
        attempts: int = 0,
        key_hint: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, key_hint=key_hint)
        self.status = status
        self.path = path
        self.request_id = request_id


class APIStatusError(AccountAPIError):
    """The service answered with a status the call does not treat as success.

    ``code`` is the body's machine-readable ``error`` field (``None`` when the body was not
    the documented JSON, e.g. a gateway's HTML page); ``body_excerpt`` holds a short,
    bounded piece of such a body. ``retry_after`` is the wait in seconds the service asked
    for, where it sent one.
    """

    status: int
    """The HTTP status code of the answer."""
    code: str | None
    """The body's machine-readable ``error`` field, or ``None`` when the body was not the documented JSON."""
    details: Any
    """The body's ``details`` field, as sent (``None`` when absent)."""
    request_id: str | None
    """The service's ``X-Request-Id`` for the answer: quote it in a support ticket."""
    headers: Mapping[str, str]
    """The answer's headers, case-insensitive (a key echoed back shows as its hint)."""
    retry_after: float | None
    """Seconds the service asked to wait (``Retry-After``), if it sent one."""
    body_excerpt: str | None
    """A short, bounded piece of a body that was not the documented JSON."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        details: Any = None,
        request_id: str | None = None,
        headers: Mapping[str, str] = _EMPTY_HEADERS,
        retry_after: float | None = None,
        body_excerpt: str | None = None,
        attempts: int = 0,
        key_hint: str | None = None,
    ) -> None:
        super().__init__(message, attempts=attempts, key_hint=key_hint)
        self.status = status
        self.code = code
        self.details = details
        self.request_id = request_id
        self.headers = headers
        self.retry_after = retry_after
        self.body_excerpt = body_excerpt

    def __reduce__(self) -> tuple[Any, ...]:
        # aiohttp's response headers are a read-only CIMultiDictProxy, which does not
        # pickle; a CIMultiDict copy keeps repeated and case-insensitive names.
        state = dict(self.__dict__)
        state["headers"] = CIMultiDict(self.headers)
        return (_rebuild, (type(self), state))

    def __str__(self) -> str:
        head = f"{self.status} {self.code}" if self.code else str(self.status)
        tail = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{head}: {self.message}{tail}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class UnexpectedRedirectError(APIStatusError):
    """A 3xx answer: the SDK never follows redirects, so credentials stay with the service."""


class BadRequestError(APIStatusError):
    """400: the service rejected the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, unknown or revoked (``auth_invalid``)."""


class PaymentRequiredError(APIStatusError):
    """402: the account has no credit left for the operation (``credit_insufficient``)."""


class PermissionDeniedError(APIStatusError):
    """403: e.g. ``auth_email_not_verified``, ``content_rejected`` or ``account_suspended``."""


class NotFoundError(APIStatusError):
    """404: the resource does not exist."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the account's current state."""


class PayloadTooLargeError(APIStatusError):
    """413: the request body was too large."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: too many concurrent requests for the key; retried after ``retry_after`` seconds."""

    retryable = True
    """True: the SDK retries this status (and did, as far as the retry policy allowed)."""


class UnavailableForLegalReasonsError(APIStatusError):
    """451: the service may not serve this request for legal reasons."""


class InternalServerError(APIStatusError):
    """500, or any 5xx without a class of its own; not retried (the service may have acted)."""


class BadGatewayError(InternalServerError):
    """502 from the service's gateway: transient, retried."""

    retryable = True
    """True: the SDK retries this status (and did, as far as the retry policy allowed)."""


class ServiceUnavailableError(InternalServerError):
    """503 from the service's gateway: transient, retried."""

    retryable = True
    """True: the SDK retries this status (and did, as far as the retry policy allowed)."""


# Tracebacks and reprs name an exception by its public path (``accountapi.RateLimitError``,
# not ``accountapi._exceptions.RateLimitError``), and pickles find it there. Set here,
# where the classes are defined, because ``accountapi`` imports its names lazily: an error
# raised before anyone touched ``accountapi.RateLimitError`` must say so too.
for _name in __all__:
    globals()[_name].__module__ = "accountapi"
del _name
