"""The account resource: ``client.account.profile()`` and ``client.account.dismiss_notifications()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._config import NOT_GIVEN, NotGiven, Timeout
from ._decode import decode_profile
from ._exceptions import APIResponseValidationError
from ._headers import request_id_from
from ._keys import Credential
from ._models import Profile
from ._transport import RawResponse

if TYPE_CHECKING:
    from ._calls import CallPath

__all__ = ["DISMISS_PATH", "PROFILE_PATH", "AccountResource", "parse_profile"]

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


class AccountResource:
    """Operations on the account behind an API key."""

    __slots__ = ("_calls", "_dismiss_url", "_profile_url")

    def __init__(self, calls: CallPath) -> None:
        self._calls = calls
        self._profile_url = calls.url(PROFILE_PATH)
        self._dismiss_url = calls.url(DISMISS_PATH)

    async def profile(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
    ) -> Profile:
        """Fetch the account profile: balance, holds, credit limit, expiry, flags.

        ``api_key`` uses another key on the same client; ``timeout`` overrides the
        client's for this call.
        """
        # From here on the key is held only as a Credential: a frame that an error passes
        # through must not show it among its locals.
        key = None if api_key is None else Credential(api_key)
        del api_key
        profile, _ = await self._calls.request(
            "GET", self._profile_url, parse_profile, key, timeout
        )
        return profile

    async def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
    ) -> None:
        """Clear the unseen-credit notice (``Profile.pending_credit_notice``).

        Dismissing is idempotent: calling it again after an error is always safe.
        """
        key = None if api_key is None else Credential(api_key)
        del api_key
        await self._calls.request("POST", self._dismiss_url, parse_dismissed, key, timeout)

    def __repr__(self) -> str:
        return f"AccountResource({self._calls!r})"
