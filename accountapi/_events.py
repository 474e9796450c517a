"""Value types the call path hands to hooks, logs and telemetry: imported by each side,
so none of them imports another for a type."""

from __future__ import annotations

import attrs

from ._exceptions import AccountAPIError, APIStatusError

__all__ = ["RetryEvent"]


@attrs.frozen(slots=True, kw_only=True)
class RetryEvent:
    """What a retry hook is told before each wait: the failed attempt and the wait ahead."""

    attempt: int
    """The attempt that just failed (1 for the first)."""
    wait: float
    """Seconds the SDK will sleep before the next attempt."""
    error: AccountAPIError
    """The failure being retried."""
    key_hint: str | None
    """The key, as a hint (``dpct_…abcd``), never in full."""

    @property
    def status(self) -> int | None:
        """The HTTP status of the failed attempt, or ``None`` when it got no answer."""
        return self.error.status if isinstance(self.error, APIStatusError) else None

    @property
    def request_id(self) -> str | None:
        """The service's ``X-Request-Id`` for the failed attempt, if it answered with one."""
        return self.error.request_id if isinstance(self.error, APIStatusError) else None
