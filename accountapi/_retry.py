"""Retries, driven by tenacity, that cost nothing when the first attempt succeeds.

The client runs the first attempt bare. Only when it fails with a retryable error does
the call hand over to `Retrier.retry()`: a ``tenacity.AsyncRetrying`` loop that
replays that failure as its own attempt 1 and then decides every wait, sleep and
further attempt. Measured here, entering
``AsyncRetrying`` for every call cost about a third of raw aiohttp's throughput; this way
the success path pays one ``try`` block.

What is retried: [`AccountAPIError.retryable`][accountapi.AccountAPIError.retryable] errors (429, 502, 503, and connections
that never reached the service). How long it waits: the service's ``Retry-After`` when
given, never less; otherwise full-jitter exponential backoff. When it stops: after
``max_retries``, or at once when the next wait is over ``max_wait`` or would end past the
call's deadline, or when the client's `RetryBudget` has too
few tokens for the retry; the caller then gets the last real error with ``attempts`` set
(and ``retry_budget_exhausted`` in the last case).
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from tenacity import AsyncRetrying, RetryCallState

from . import _telemetry
from ._budget import RetryBudget
from ._clock import Clock
from ._config import RetryPolicy
from ._events import RetryEvent
from ._exceptions import AccountAPIError, APIStatusError

__all__ = ["Retrier", "RetryEvent", "backoff_wait"]

T = TypeVar("T")
logger: Final = logging.getLogger("accountapi")

# Sleeping a hair longer than asked keeps us from arriving before a Retry-After deadline
# through float rounding or timer granularity.
_MARGIN: Final = 0.001


def backoff_wait(policy: RetryPolicy, retry_number: int, rand: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in ``[0, min(max, initial * 2**(n-1))]``."""
    # The exponent stops at 1000: 2**1024 is beyond a float (an OverflowError on the
    # 1,025th retry), and long before that the ceiling is backoff_max.
    growth = 2 ** min(retry_number - 1, 1000)
    ceiling = min(policy.backoff_max, policy.backoff_initial * growth)
    return float(rand() * ceiling)


class Retrier:
    """Runs an attempt function under a [`RetryPolicy`][accountapi.RetryPolicy] with an injectable clock."""

    __slots__ = ("_clock", "_on_retry", "_rand", "budget", "max_retries", "policy")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        max_retries: int,
        clock: Clock,
        on_retry: Callable[[RetryEvent], None] | None = None,
        rand: Callable[[], float] = random.random,
        budget: RetryBudget | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget  # shared by every retrier derived from this one
        self.max_retries = max_retries
        self._clock = clock
        self._on_retry = on_retry
        self._rand = rand

    def should_retry(self, first: AccountAPIError) -> bool:
        """Whether a failed first attempt goes on to `retry()`."""
        return first.retryable and self.max_retries > 0

    def with_max_retries(self, max_retries: int) -> Retrier:
        """The same policy, clock and hook with another retry count."""
        return self.with_policy(self.policy, max_retries)

    def with_policy(self, policy: RetryPolicy, max_retries: int) -> Retrier:
        """The same clock and hook with another policy and retry count."""
        if policy is self.policy and max_retries == self.max_retries:
            return self
        return Retrier(
            policy,
            max_retries=max_retries,
            clock=self._clock,
            on_retry=self._on_retry,
            rand=self._rand,
            budget=self.budget,
        )

    async def retry(
        self,
        attempt: Callable[[int], Awaitable[T]],
        first: AccountAPIError,
        *,
        deadline: Callable[[], float | None],
        key_hint: str,
    ) -> T:
        """Continue after ``first``, the failure of the bare attempt 1: tenacity decides
        every wait and further ``attempt(n)``. Returns the value; raises the last real
        error when it gives up (the caller sets its ``attempts``).

        ``deadline()`` is the call's deadline (monotonic; None: none), asked before each
        wait: a shared read's deadline moves when a later caller joins it.
        """
        policy = self.policy
        max_retries = self.max_retries
        hint = key_hint
        clock = self._clock
        budget = self.budget
        drawn = [0]  # tokens the latest retry took, given back if it succeeds

        def wait(state: RetryCallState) -> float:
            exc = _error_of(state)
            asked = exc.retry_after if isinstance(exc, APIStatusError) else None
            if asked is not None:
                return asked + _MARGIN
            return min(backoff_wait(policy, state.attempt_number, self._rand), policy.max_wait)

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number > max_retries:
                return True
            upcoming = state.upcoming_sleep
            if upcoming > policy.max_wait + _MARGIN:
                return True
            ends = deadline()
            if ends is not None and clock.monotonic() + upcoming > ends:
                return True
            return budget is not None and not _draw(budget, _error_of(state), drawn, hint)

        def before_sleep(state: RetryCallState) -> None:
            event = RetryEvent(
                attempt=state.attempt_number,
                wait=state.upcoming_sleep,
                error=_error_of(state),
                key_hint=hint,
            )
            # a broken log handler must not break the call
            with contextlib.suppress(Exception):
                logger.info(
                    "retrying after %s (attempt %d failed, waiting %.3fs, status=%s, "
                    "request_id=%s, key=%s, budget=%s)",
                    type(event.error).__name__,
                    event.attempt,
                    event.wait,
                    event.status,
                    event.request_id,
                    hint,
                    "off" if budget is None else f"{budget.level}/{budget.capacity}",
                )
            _telemetry.retried(event)
            if self._on_retry is not None:
                try:
                    self._on_retry(event)
                except Exception:  # a broken metrics hook must not break the call
                    logger.exception("on_retry hook raised; retrying anyway")

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=_is_retryable,
            sleep=clock.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        async for try_ in retrying:
            with try_:
                number = try_.retry_state.attempt_number
                if number == 1:
                    raise first  # replay the failure the bare first attempt already had
                value = await attempt(number)
                if budget is not None:
                    budget.give_back(drawn[0] or budget.refill)
                return value
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _draw(budget: RetryBudget, error: AccountAPIError, drawn: list[int], hint: str) -> bool:
    """Take the tokens for retrying ``error``; when the budget refuses, flag the error
    (it is the one the caller gets), log it and count it."""
    cost = budget.cost(error)
    if budget.spend(cost):
        if cost:
            drawn[0] = cost
        return True
    error.retry_budget_exhausted = True
    error.add_note(
        f"not retried: the client's retry budget is spent ({budget.level} of "
        f"{budget.capacity} tokens left, this retry costs {cost})"
    )
    logger.info(
        "not retrying %s: the retry budget is spent (%d of %d tokens left, this retry "
        "costs %d; %d refused so far; key=%s)",
        type(error).__name__,
        budget.level,
        budget.capacity,
        cost,
        budget.refused,
        hint,
    )
    _telemetry.budget_refused(error)
    return False


def _error_of(state: RetryCallState) -> AccountAPIError:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    if not isinstance(exc, AccountAPIError):  # pragma: no cover - _is_retryable filters
        raise TypeError("retry state without an SDK error")
    return exc


def _is_retryable(state: RetryCallState) -> bool:
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return False
    exc = outcome.exception()
    return isinstance(exc, AccountAPIError) and exc.retryable
