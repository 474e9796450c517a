"""Which keys are running out: a balance below an amount, credits that expire soon.

Pure rules over a [`Profile`][accountapi.Profile], with no I/O and no clock of their own:
the moment expiry is judged against is always passed in, so a test (or a report for
"next Monday") chooses it. Money is compared as `Decimal`, exactly.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import attrs

from ._exceptions import ConfigurationError
from ._models import Profile

__all__ = ["BalanceThresholds", "flags", "is_expiring", "is_low", "parse_amount"]

# Digits with an optional fraction: what an operator types for an amount of EUR. No sign,
# exponent, nan or infinity, so "5", "5.50" and "0.000001" mean what they say.
_PLAIN_AMOUNT: Final = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?")


def parse_amount(text: str) -> Decimal:
    """An amount of EUR from plain text (``"5"``, ``"5.50"``), exactly; ValueError otherwise."""
    if not _PLAIN_AMOUNT.fullmatch(text):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(
            f"{shown!r} is not a plain amount of EUR: digits with an optional fraction, "
            "such as 5 or 5.50, at most 30 digits on each side of the point "
            "(no sign, exponent, nan or inf)"
        )
    return Decimal(text)


def is_low(balance_eur: Decimal, below_eur: Decimal) -> bool:
    """Whether a balance is strictly below the amount: a balance equal to it is not low."""
    return balance_eur < below_eur


def is_expiring(expires_at: datetime | None, within: timedelta, now: datetime) -> bool:
    """Whether credits expire no later than ``now + within`` (already expired included);
    credits that never expire (``None``) never are."""
    if expires_at is None:
        return False
    try:
        horizon = now + within
    except OverflowError:  # a window past the calendar's end: every expiry date is in it
        return True
    return expires_at <= horizon


def _amount(value: Any) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return parse_amount(value)
        except ValueError as exc:
            raise ConfigurationError(f"below_eur: {exc}") from None
    raise ConfigurationError(
        f"below_eur must be a Decimal, an int or a plain amount string, not {type(value).__name__}"
        " (a float is not exact money)"
    )


def _check_amount(_: object, __: object, value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and value >= 0):
        raise ConfigurationError(f"below_eur must be a finite amount >= 0, not {value}")


def _check_within(_: object, __: object, value: timedelta | None) -> None:
    if value is None:
        return
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ConfigurationError(f"expiring_within must be a timedelta >= 0, not {value!r}")


@attrs.frozen(kw_only=True)
class BalanceThresholds:
    """When a key is **low** (its spendable ``balance_eur`` strictly below ``below_eur``)
    or **expiring** (its ``credits_expire_at`` no later than ``expiring_within`` from
    now, already expired included; no expiry date: never). ``None`` turns a rule off.

    ``below_eur`` is a `Decimal` (an int or a plain string such as
    ``"5.50"`` is converted exactly; a float is refused) and must be >= 0; a balance equal
    to it is not low. Give it to [`BalanceSummary`][accountapi.BalanceSummary] to count low and
    expiring keys and accounts over a run.
    """

    below_eur: Decimal | None = attrs.field(
        default=None, converter=_amount, validator=_check_amount
    )
    """A balance strictly below this (EUR, exact) is low; ``None`` turns the rule off."""
    expiring_within: timedelta | None = attrs.field(default=None, validator=_check_within)
    """Credits expiring within this long from now are expiring; ``None`` turns the rule off."""

    def is_low(self, profile: Profile) -> bool:
        """Whether the profile's balance is below ``below_eur`` (False when that is None)."""
        return self.below_eur is not None and is_low(profile.balance_eur, self.below_eur)

    def is_expiring(self, profile: Profile, *, now: datetime) -> bool:
        """Whether the profile's credits expire within ``expiring_within`` of ``now`` (an
        aware datetime); False when ``expiring_within`` is None."""
        within = self.expiring_within
        return within is not None and is_expiring(profile.credits_expire_at, within, now)


def flags(
    rules: BalanceThresholds | None,
    balance_eur: Decimal,
    expires_at: datetime | None,
    now: datetime,
) -> tuple[bool | None, bool | None]:
    """``(low, expiring)`` for one answered key; each None when its rule is off, so a
    row can tell "not low" from "not asked"."""
    if rules is None:
        return None, None
    low = None if rules.below_eur is None else is_low(balance_eur, rules.below_eur)
    within = rules.expiring_within
    expiring = None if within is None else is_expiring(expires_at, within, now)
    return low, expiring
