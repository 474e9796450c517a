"""The account resource: ``client.account.profile()`` and ``client.account.dismiss_notifications()``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final, TypeVar

from ._call_options import CallOptions
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._decode import decode_profile
from ._exceptions import APIResponseValidationError
from ._headers import request_id_from
from ._http._transport import RawResponse
from ._keys import Credential
from ._masking import without_key
from ._models import Profile
from ._response import APIResponse

if TYPE_CHECKING:
    from yarl import URL

    from ._calls import CallPath
    from ._callstate import Call

__all__ = [
    "DISMISS_PATH",
    "PROFILE_PATH",
    "AccountResource",
    "AccountResourceWithResponse",
    "parse_profile",
]

PROFILE_PATH: Final = "/v1/account/profile"
DISMISS_PATH: Final = "/v1/account/notifications/dismiss"


def parse_profile(raw: RawResponse) -> Profile:
    """Decode a 2xx profile answer; a body too large, unreadable or malformed is a validation error."""
    if raw.truncated or raw.problem is not None:
        raise APIResponseValidationError(
            "response body larger than Limits.max_response_bytes; not read"
            if raw.problem is None
            else f"unreadable response body: {raw.problem}",
            status=raw.status,
            request_id=request_id_from(raw.headers),
        )
    try:
        return decode_profile(raw.body, status=raw.status)
    except APIResponseValidationError as exc:
        exc.request_id = request_id_from(raw.headers)
        raise


def parse_dismissed(raw: RawResponse) -> None:
    """Any 2xx means dismissed; the body is undocumented and deliberately ignored."""
    return


_T = TypeVar("_T")


def _options(
    max_retries: int | NotGiven, extra_headers: Mapping[str, str] | None
) -> CallOptions | None:
    """The per-call options, or None (nothing to carry) when the caller gave none."""
    if max_retries is NOT_GIVEN and extra_headers is None:
        return None
    return CallOptions.make(max_retries, extra_headers)


def _response(value: _T, call: Call[_T]) -> APIResponse[_T]:
    answer = call.answer
    assert answer is not None  # noqa: S101 - a call returns a value only from a 2xx answer
    answer = without_key(answer, call.key)
    return APIResponse(
        parsed=value,
        status=answer.status,
        headers=answer.headers,
        request_id=request_id_from(answer.headers),
        attempts=call.sent,
    )


class AccountResource:
    """Operations on the account behind an API key.

    Every method takes the same per-call options: ``api_key`` (another key on the same
    client), ``timeout`` (a [`Timeout`][accountapi.Timeout], a number of seconds for the whole call, or
    ``None``), ``max_retries`` (this call's retries; ``0`` sends one request at most) and
    ``extra_headers`` (sent with this call only; the SDK's own ``Authorization``,
    ``Accept-Encoding`` and ``User-Agent`` cannot be set, see
    [`AccountClient`][accountapi.AccountClient]'s ``default_headers``). ``profile()`` also takes
    ``coalesce`` (join an identical read not yet sent; default: the client's).
    """

    __slots__ = ("_calls", "_coalesce", "_dismiss_url", "_profile_url", "with_response")

    def __init__(self, calls: CallPath) -> None:
        self._calls = calls
        self._coalesce = calls.coalesce
        self._profile_url = calls.url(PROFILE_PATH)
        self._dismiss_url = calls.url(DISMISS_PATH)
        self.with_response: Final = AccountResourceWithResponse(self)
        """The same calls, each returning an `APIResponse` (status, headers,
        request id, attempts) around its value."""

    async def profile(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
        coalesce: bool | NotGiven = NOT_GIVEN,
    ) -> Profile:
        """Fetch the account profile: balance, holds, credit limit, expiry, flags.

        With ``coalesce=True`` (or a client made with it) a call for a key whose
        identical read is queued and not yet sent joins that read instead of sending its
        own: README "Under overload".
        """
        # From here on the key is held only as a Credential: a frame that an error passes
        # through must not show it among its locals.
        key = None if api_key is None else Credential(api_key)
        del api_key
        options = None
        if max_retries is not NOT_GIVEN or extra_headers is not None or coalesce is not NOT_GIVEN:
            options = CallOptions.make(max_retries, extra_headers, coalesce)
        if self._coalesce if options is None or options.coalesce is None else options.coalesce:
            return await self._calls.read_shared(
                self._profile_url, parse_profile, key, timeout, options
            )
        profile, _ = await self._calls.request(
            "GET", self._profile_url, parse_profile, key, timeout, options
        )
        return profile

    async def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        """Clear the unseen-credit notice (``Profile.pending_credit_notice``).

        Dismissing is idempotent: calling it again after an error is always safe.
        """
        key = None if api_key is None else Credential(api_key)
        del api_key
        await self._calls.request(
            "POST",
            self._dismiss_url,
            parse_dismissed,
            key,
            timeout,
            _options(max_retries, extra_headers),
        )

    def __repr__(self) -> str:
        return f"AccountResource({self._calls!r})"


class AccountResourceWithResponse:
    """``client.account.with_response``: each call returns an `APIResponse`."""

    __slots__ = ("_resource",)

    def __init__(self, resource: AccountResource) -> None:
        self._resource = resource

    async def profile(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[Profile]:
        """[`AccountResource.profile()`][accountapi.AccountResource.profile], with the answer's status, headers and request id."""
        key = None if api_key is None else Credential(api_key)
        del api_key
        resource = self._resource
        options = _options(max_retries, extra_headers)
        return await self._answer(
            "GET", resource._profile_url, parse_profile, key, timeout, options
        )

    async def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        extra_headers: Mapping[str, str] | None = None,
    ) -> APIResponse[None]:
        """[`AccountResource.dismiss_notifications()`][accountapi.AccountResource.dismiss_notifications], with the answer's status,
        headers and request id."""
        key = None if api_key is None else Credential(api_key)
        del api_key
        resource = self._resource
        options = _options(max_retries, extra_headers)
        return await self._answer(
            "POST", resource._dismiss_url, parse_dismissed, key, timeout, options
        )

    async def _answer(
        self,
        method: str,
        url: URL,
        parse: Callable[[RawResponse], _T],
        key: Credential | None,
        timeout: Timeout | float | NotGiven | None,
        options: CallOptions | None,
    ) -> APIResponse[_T]:
        """The call, and the answer its value was decoded from."""
        value, call = await self._resource._calls.request(method, url, parse, key, timeout, options)
        return _response(value, call)

    def __repr__(self) -> str:
        return f"AccountResourceWithResponse({self._resource._calls!r})"
