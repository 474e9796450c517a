"""accountapi: an asyncio SDK for the Depicta account API.

>>> async with AccountClient() as client:          # key from $ACCOUNTAPI_API_KEY
...     profile = await client.account.profile()
...     print(profile.balance_eur)                  # Decimal('9.955000')

Each public name is imported from its private module on first use (PEP 562), so
``import accountapi`` costs almost nothing until a name is used: ``accountapi --help``
and a program that only catches ``accountapi.RateLimitError`` never load aiohttp.
"""

import importlib
from typing import TYPE_CHECKING, Final

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

# The private module each public name lives in; the imports below under TYPE_CHECKING
# say the same to type checkers (tests/test_public_api.py checks that they agree).
_HOMES: Final[dict[str, str]] = {
    "AccountResource": "._account",
    "RetryBudget": "._budget",
    "BalanceFailed": "._balance_results",
    "BalanceOk": "._balance_results",
    "BalanceResult": "._balance_results",
    "BalanceStream": "._bulk",
    "BalanceSummary": "._balance_summary",
    "KeySource": "._bulk",
    "AccountClient": "._client",
    "NOT_GIVEN": "._config",
    "Limits": "._config",
    "NotGiven": "._config",
    "RetryPolicy": "._config",
    "Timeout": "._config",
    "RetryEvent": "._events",
    "AccountAPIError": "._exceptions",
    "APIConnectionError": "._exceptions",
    "APIResponseValidationError": "._exceptions",
    "APIStatusError": "._exceptions",
    "APITimeoutError": "._exceptions",
    "AuthenticationError": "._exceptions",
    "BadGatewayError": "._exceptions",
    "BadRequestError": "._exceptions",
    "ClientStateError": "._exceptions",
    "ConfigurationError": "._exceptions",
    "ConflictError": "._exceptions",
    "InternalServerError": "._exceptions",
    "MalformedAPIKeyError": "._exceptions",
    "NotFoundError": "._exceptions",
    "PayloadTooLargeError": "._exceptions",
    "PaymentRequiredError": "._exceptions",
    "PermissionDeniedError": "._exceptions",
    "RateLimitError": "._exceptions",
    "ServiceUnavailableError": "._exceptions",
    "UnavailableForLegalReasonsError": "._exceptions",
    "UnexpectedRedirectError": "._exceptions",
    "UnprocessableEntityError": "._exceptions",
    "key_hint": "._keys",
    "Profile": "._models",
    "APIResponse": "._response",
    "SyncAccountClient": "._sync",
    "SyncAccountResource": "._sync",
    "BalanceThresholds": "._thresholds",
}

if TYPE_CHECKING:
    from ._account import AccountResource as AccountResource
    from ._balance_results import BalanceFailed as BalanceFailed
    from ._balance_results import BalanceOk as BalanceOk
    from ._balance_results import BalanceResult as BalanceResult
    from ._balance_summary import BalanceSummary as BalanceSummary
    from ._budget import RetryBudget as RetryBudget
    from ._bulk import BalanceStream as BalanceStream
    from ._bulk import KeySource as KeySource
    from ._client import AccountClient as AccountClient
    from ._config import NOT_GIVEN as NOT_GIVEN
    from ._config import Limits as Limits
    from ._config import NotGiven as NotGiven
    from ._config import RetryPolicy as RetryPolicy
    from ._config import Timeout as Timeout
    from ._events import RetryEvent as RetryEvent
    from ._exceptions import AccountAPIError as AccountAPIError
    from ._exceptions import APIConnectionError as APIConnectionError
    from ._exceptions import APIResponseValidationError as APIResponseValidationError
    from ._exceptions import APIStatusError as APIStatusError
    from ._exceptions import APITimeoutError as APITimeoutError
    from ._exceptions import AuthenticationError as AuthenticationError
    from ._exceptions import BadGatewayError as BadGatewayError
    from ._exceptions import BadRequestError as BadRequestError
    from ._exceptions import ClientStateError as ClientStateError
    from ._exceptions import ConfigurationError as ConfigurationError
    from ._exceptions import ConflictError as ConflictError
    from ._exceptions import InternalServerError as InternalServerError
    from ._exceptions import MalformedAPIKeyError as MalformedAPIKeyError
    from ._exceptions import NotFoundError as NotFoundError
    from ._exceptions import PayloadTooLargeError as PayloadTooLargeError
    from ._exceptions import PaymentRequiredError as PaymentRequiredError
    from ._exceptions import PermissionDeniedError as PermissionDeniedError
    from ._exceptions import RateLimitError as RateLimitError
    from ._exceptions import ServiceUnavailableError as ServiceUnavailableError
    from ._exceptions import UnavailableForLegalReasonsError as UnavailableForLegalReasonsError
    from ._exceptions import UnexpectedRedirectError as UnexpectedRedirectError
    from ._exceptions import UnprocessableEntityError as UnprocessableEntityError
    from ._keys import key_hint as key_hint
    from ._models import Profile as Profile
    from ._response import APIResponse as APIResponse
    from ._sync import SyncAccountClient as SyncAccountClient
    from ._sync import SyncAccountResource as SyncAccountResource
    from ._thresholds import BalanceThresholds as BalanceThresholds

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
        """A public name, imported from its module on first use and kept; or one of the
        names that moved to ``accountapi.gates``, with a DeprecationWarning."""
        home = _HOMES.get(name)
        if home is None:
            from ._moved import moved

            return moved(name)
        value = getattr(importlib.import_module(home, __name__), name)
        globals()[name] = value  # later lookups find it without calling __getattr__
        return value


def __dir__() -> list[str]:
    """Every public name, imported yet or not (the moved names stay unadvertised)."""
    return sorted(set(globals()) | set(__all__))
