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
    email: str
    balance_eur: Decimal
    held_eur: Decimal
    credit_limit_cents: int
    created_at: datetime
    email_verified: bool
    pending_credit_notice: bool
    prompt_analysis_opt_in: bool
    two_factor_enabled: bool
    name: str | None = None
    credits_expire_at: datetime | None = None
    free_trial_pending_eur: Decimal | None = None
    providers: tuple[str, ...] = ()
