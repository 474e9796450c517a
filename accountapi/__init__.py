"""accountapi: an asyncio SDK for the Depicta account API.

>>> async with AccountClient() as client:          # key from $ACCOUNTAPI_API_KEY
...     profile = await client.account.profile()
...     print(profile.balance_eur)                  # Decimal('9.955000')
"""

from typing import TYPE_CHECKING

from ._account import AccountResource
from ._balance_results import BalanceFailed, BalanceOk, BalanceResult
from ._balance_summary import BalanceSummary
from ._budget import RetryBudget
from ._bulk import BalanceStream, KeySource
from ._client import AccountClient
from ._config import NOT_GIVEN, Limits, NotGiven, RetryPolicy, Timeout
from ._events import RetryEvent
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
from ._keys import key_hint
from ._models import Profile
from ._response import APIResponse
from ._sync import SyncAccountClient, SyncAccountResource
from ._thresholds import BalanceThresholds
from ._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponse",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AccountAPIError",
    "AccountClient",
    "AccountResource",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BalanceFailed",
    "BalanceOk",
    "BalanceResult",
    "BalanceStream",
    "BalanceSummary",
    "BalanceThresholds",
    "ClientStateError",
    "ConfigurationError",
    "ConflictError",
    "InternalServerError",
    "KeySource",
    "Limits",
    "MalformedAPIKeyError",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Profile",
    "RateLimitError",
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

if TYPE_CHECKING:
    # The names that moved to accountapi.gates, as type checkers should see them while
    # the deprecated aliases last; at run time __getattr__ serves them with a warning.
    from .gates import MAX_COOL_DOWN as MAX_COOL_DOWN
    from .gates import Clock as Clock
    from .gates import GateTimeout as GateTimeout
    from .gates import KeyCoolingDown as KeyCoolingDown
    from .gates import KeyGate as KeyGate
    from .gates import MemoryKeyGate as MemoryKeyGate
    from .gates import RedisKeyGate as RedisKeyGate
else:
    # Hidden from type checkers, which would otherwise accept any name imported from here.
    def __getattr__(name: str) -> object:
        """The names that moved to ``accountapi.gates``, with a DeprecationWarning."""
        from ._moved import moved

        return moved(name)
