"""The account resource: ``client.account.profile()`` and ``client.account.dismiss_notifications()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._config import NOT_GIVEN, NotGiven, Timeout
from ._decode import decode_profile
from ._exceptions import APIResponseValidationError
from ._headers import request_id_from
from ._models import Profile
from ._transport import RawResponse

if TYPE_CHECKING:
    from ._client import AccountClient

__all__ = ["AccountResource"]

PROFILE_PATH: Final = "/v1/account/profile"
DISMISS_PATH: Final = "/v1/account/notifications/dismiss"


def parse_profile(raw: RawResponse) -> Profile:
    """Decode a 2xx profile answer; a body that is too large or malformed is a validation error."""
    if raw.truncated:
        raise APIResponseValidationError(
            "response body exceeds the client's max_response_bytes and was not read",
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

    __slots__ = ("_client", "_dismiss_url", "_profile_url")

    def __init__(self, client: AccountClient) -> None:
        self._client = client
        self._profile_url = client._url(PROFILE_PATH)
        self._dismiss_url = client._url(DISMISS_PATH)

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
        profile, _ = await self._client._request(
            "GET", self._profile_url, parse_profile, api_key, timeout
        )
        return profile

    async def profile_with_attempts(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
    ) -> tuple[Profile, int]:
        """Like :meth:`profile`, plus how many HTTP attempts it took (1 unless retried)."""
        return await self._client._request(
            "GET", self._profile_url, parse_profile, api_key, timeout
        )

    async def dismiss_notifications(
        self,
        *,
        api_key: str | None = None,
        timeout: Timeout | float | NotGiven | None = NOT_GIVEN,
    ) -> None:
        """Clear the unseen-credit notice (``Profile.pending_credit_notice``)."""
        await self._client._request("POST", self._dismiss_url, parse_dismissed, api_key, timeout)

    def __repr__(self) -> str:
        return f"AccountResource(client={self._client!r})"
