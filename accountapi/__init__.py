"""accountapi: an asyncio SDK for the Depicta account API.

>>> async with AccountClient() as client:          # key from $ACCOUNTAPI_API_KEY
...     profile = await client.account.profile()
...     print(profile.balance_eur)                  # Decimal('9.955000')
"""

from ._account import AccountResource
from ._budget import RetryBudget
from ._bulk import BalanceResult, BalanceStream, BalanceSummary, KeySource
from ._client import AccountClient
from ._clock import Clock
from ._config import NOT_GIVEN, Limits, NotGiven, RetryPolicy, Timeout
from ._exceptions import (
    AccountAPIError,
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    ClientStateError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    MalformedAPIKeyError,
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
from ._gate import MAX_COOL_DOWN, GateTimeout, KeyCoolingDown, KeyGate, MemoryKeyGate
from ._keys import key_hint
from ._models import Profile
from ._redis_gate import RedisKeyGate
from ._retry import RetryEvent
from ._sync import SyncAccountClient, SyncAccountResource
from ._thresholds import BalanceThresholds
from ._version import __version__

__all__ = [
    "MAX_COOL_DOWN",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AccountAPIError",
    "AccountClient",
    "AccountResource",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BalanceResult",
    "BalanceStream",
    "BalanceSummary",
    "BalanceThresholds",
    "ClientStateError",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "GateTimeout",
    "InternalServerError",
    "KeyCoolingDown",
    "KeyGate",
    "KeySource",
    "Limits",
    "MalformedAPIKeyError",
    "MemoryKeyGate",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Profile",
    "RateLimitError",
    "RedisKeyGate",
    "RetryBudget",
    "RetryEvent",
    "RetryPolicy",
    "ServiceUnavailableError",
    "SyncAccountClient",
    "SyncAccountResource",
    "Timeout",
    "UnavailableForLegalReasonsError",
    "UnexpectedRedirectError",
    "UnprocessableEntityError",
    "__version__",
    "key_hint",
]

# Tracebacks and reprs name an exception by its public path (``accountapi.RateLimitError``,
# not ``accountapi._exceptions.RateLimitError``); pickling finds it there too. Exceptions
# only: the attrs models keep their defining module, where their annotations resolve.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) and issubclass(_value, BaseException):
        _value.__module__ = __name__
del _name, _value
