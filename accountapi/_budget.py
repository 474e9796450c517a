"""The retry budget: a token bucket that caps how many retries one client adds to an outage.

Retries help when failures are rare and hurt when the service is failing: every call
then multiplies its load by ``1 + max_retries`` just when the service can least take it.
A [`RetryBudget`][accountapi.RetryBudget] (the AWS SDKs' "standard" retry quota, gRPC's retry throttling)
lets retries through while most calls succeed and stops them while most fail: a retry
takes tokens, a call that succeeds gives one back, and a retry that finds too few tokens
is not made: its call ends at once with the error it had, flagged
``retry_budget_exhausted``. First attempts never take tokens, so the budget never stops a
call from being tried once.
"""

from __future__ import annotations

import itertools
import weakref
from typing import Final

from ._exceptions import AccountAPIError, APIConnectionError, ConfigurationError, RateLimitError

__all__ = ["RetryBudget", "live_budgets"]

_live: Final[weakref.WeakSet[RetryBudget]] = weakref.WeakSet()
_numbers: Final = itertools.count(1)


def _whole(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigurationError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


class RetryBudget:
    """Tokens shared by every call of a client: a retry spends them, a success refills them.

    - ``capacity`` (500): the most tokens held, and the level a new budget starts at.
    - ``retry_cost`` (5): what a retry of a 502 or 503 takes.
    - ``connection_retry_cost`` (10): what a retry of a connection that failed before
      the service answered takes (refused, reset, connect timeout): such failures tie up
      the caller longest and say the most about the service's state.
    - ``refill`` (1): what a call that succeeds at its first attempt gives back. A call
      that succeeds after retrying gives back what its last retry took.

    429 answers take nothing: they are the key's concurrency limit, already paced by the
    key's cool-down, and say nothing about the service's health (see README "Under
    overload").

    One budget belongs to a client and is shared by its [`AccountClient.with_options()`][accountapi.AccountClient.with_options]
    clients, its ``balances()`` runs and a [`SyncAccountClient`][accountapi.SyncAccountClient]'s calls. Pass the
    same instance to several clients to share it between them. ``level`` and
    ``refused`` can be read at any time; updates take no lock, so a budget shared by
    clients on several threads may lose a token now and then, never a call.
    """

    __slots__ = (
        "__weakref__",
        "capacity",
        "connection_retry_cost",
        "level",
        "number",
        "refill",
        "refused",
        "retry_cost",
    )

    def __init__(
        self,
        *,
        capacity: int = 500,
        retry_cost: int = 5,
        connection_retry_cost: int = 10,
        refill: int = 1,
    ) -> None:
        self.capacity: Final = _whole("capacity", capacity, 1)
        self.retry_cost: Final = _whole("retry_cost", retry_cost, 0)
        self.connection_retry_cost: Final = _whole(
            "connection_retry_cost", connection_retry_cost, 0
        )
        self.refill: Final = _whole("refill", refill, 0)
        self.level = capacity
        """Tokens left now (0 to ``capacity``)."""
        self.refused = 0
        """Retries refused since the budget was made."""
        self.number: Final = next(_numbers)  # tells budgets apart in telemetry
        _live.add(self)

    def cost(self, error: AccountAPIError) -> int:
        """Tokens a retry of ``error`` takes (0 for a 429)."""
        if isinstance(error, RateLimitError):
            return 0
        if isinstance(error, APIConnectionError):
            return self.connection_retry_cost
        return self.retry_cost

    def spend(self, cost: int) -> bool:
        """Take ``cost`` tokens for a retry; False (and nothing taken) when too few are left."""
        if cost > self.level:
            self.refused += 1
            return False
        self.level -= cost
        return True

    def give_back(self, tokens: int) -> None:
        """Return ``tokens`` after a success, up to ``capacity``."""
        self.level = min(self.capacity, self.level + tokens)

    def __repr__(self) -> str:
        return (
            f"RetryBudget(level={self.level}, capacity={self.capacity}, "
            f"retry_cost={self.retry_cost}, connection_retry_cost={self.connection_retry_cost}, "
            f"refill={self.refill})"
        )


def live_budgets() -> list[RetryBudget]:
    """Every budget still in use in this process (for the telemetry gauge)."""
    return list(_live)
