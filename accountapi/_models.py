"""The account's data as plain, immutable attrs classes.

Models know nothing of JSON: `accountapi._decode` owns the wire format. Money is
`decimal.Decimal` with every digit the service sent; timestamps are aware
`datetime.datetime` objects.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

__all__ = ["Profile"]


@attrs.frozen(slots=True, kw_only=True)
class Profile:
    """The account behind one API key, as ``GET /v1/account/profile`` returns it.

    ``balance_eur`` is the spendable balance (holds already taken off); ``held_eur`` is
    what running generations hold. ``credit_limit_cents`` stays in integer cents as sent.
    """

    id: str
    """The account's (user's) UUID; two keys of one account share it."""
    email: str
    """The account's e-mail address."""
    balance_eur: Decimal
    """Spendable balance in EUR, holds already taken off, exact as sent."""
    held_eur: Decimal
    """EUR held by generations still running (not spendable until they end)."""
    credit_limit_cents: int
    """The per-transaction/balance credit limit, in integer EUR cents as sent."""
    created_at: datetime
    """When the account was created (timezone-aware)."""
    email_verified: bool
    """Whether the e-mail address has been verified."""
    pending_credit_notice: bool
    """True when there are unseen credit grants (cleared by ``dismiss_notifications()``)."""
    prompt_analysis_opt_in: bool
    """Whether the account opted in to prompt analysis."""
    two_factor_enabled: bool
    """Whether two-factor sign-in is on."""
    name: str | None = None
    """Display name, if set."""
    credits_expire_at: datetime | None = None
    """When the current credits expire (timezone-aware); ``None``: they do not."""
    free_trial_pending_eur: Decimal | None = None
    """Free credits in EUR pending e-mail verification, if any."""
    providers: tuple[str, ...] = ()
    """Connected OAuth providers (empty when none)."""
