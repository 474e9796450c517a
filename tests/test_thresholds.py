"""`BalanceThresholds` and the summary's low/expiring counts: the rules, exactly, with an
injected "now" (no wall clock), and over a real `balances()` run against the emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import attrs
import pytest

from accountapi import (
    AccountClient,
    BalanceSummary,
    BalanceThresholds,
    ConfigurationError,
    Profile,
)
from accountapi._thresholds import parse_amount
from accountapi.testing import Emulator, Fault

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


def profile(balance: str = "10.000000", expires: datetime | None = None) -> Profile:
    return Profile(
        id="acct_1",
        email="a@example.com",
        balance_eur=Decimal(balance),
        held_eur=Decimal(0),
        credit_limit_cents=0,
        created_at=NOW - timedelta(days=400),
        email_verified=True,
        pending_credit_notice=False,
        prompt_analysis_opt_in=False,
        two_factor_enabled=False,
        credits_expire_at=expires,
    )


@pytest.mark.parametrize(
    ("balance", "low"),
    [
        ("4.999999", True),  # just under
        ("5.000000", False),  # equal: not low
        ("5", False),  # equal with other digits: still compared exactly
        ("5.0000001", False),  # just over, past the sixth decimal
        ("-0.000000", True),
    ],
)
def test_low_is_strictly_below_compared_exactly(balance: str, low: bool) -> None:
    """A balance is low only when strictly below the amount, to every digit."""
    rules = BalanceThresholds(below_eur=Decimal("5.00"))
    assert rules.is_low(profile(balance)) is low


def test_equal_is_not_low_but_one_micro_less_is() -> None:
    """Equality is pinned both ways: at the amount not low, one millionth under low."""
    rules = BalanceThresholds(below_eur="5.50")
    assert not rules.is_low(profile("5.500000"))
    assert rules.is_low(profile("5.499999"))


@pytest.mark.parametrize(
    ("expires", "expiring"),
    [
        (NOW - timedelta(days=3), True),  # already expired
        (NOW + timedelta(days=6), True),  # within the window
        (NOW + timedelta(days=7), True),  # at the edge: within
        (NOW + timedelta(days=7, microseconds=1), False),  # just past the edge
        (NOW + timedelta(days=400), False),  # far
        (None, False),  # never expires
    ],
)
def test_expiring_within_a_window_of_an_injected_now(
    expires: datetime | None, expiring: bool
) -> None:
    """Expired or expiring no later than now + window is expiring; a null expiry never is."""
    rules = BalanceThresholds(expiring_within=timedelta(days=7))
    assert rules.is_expiring(profile(expires=expires), now=NOW) is expiring


def test_rules_that_are_not_set_flag_nothing() -> None:
    """Without below_eur nothing is low; without expiring_within nothing is expiring."""
    rules = BalanceThresholds()
    assert not rules.is_low(profile("-100"))
    assert not rules.is_expiring(profile(expires=NOW - timedelta(days=1)), now=NOW)


@pytest.mark.parametrize("text", ["5", "5.50", "0", "0.000001", "123456.1234567"])
def test_plain_amounts_parse_exactly(text: str) -> None:
    """Digits with an optional fraction parse to the exact Decimal."""
    assert parse_amount(text) == Decimal(text)
    assert str(parse_amount(text)) == text


@pytest.mark.parametrize(
    "text", ["nan", "inf", "-inf", "5e2", "1E-7", "-5", "+5", " 5", "5.", ".5", "", "5,50", "0x10"]
)
def test_anything_but_a_plain_amount_is_refused(text: str) -> None:
    """nan, infinities, exponents, signs, blanks and other spellings are not amounts."""
    with pytest.raises(ValueError, match="not a plain amount of EUR"):
        parse_amount(text)


@pytest.mark.parametrize(
    "value", [1.5, Decimal("NaN"), Decimal("Infinity"), Decimal("-1"), "abc", True]
)
def test_bad_thresholds_are_configuration_errors(value: object) -> None:
    """A float (inexact), non-finite, negative or non-numeric below_eur is refused."""
    with pytest.raises(ConfigurationError):
        BalanceThresholds(below_eur=value)


def test_a_negative_window_is_refused() -> None:
    """expiring_within must be a timedelta of zero or more."""
    with pytest.raises(ConfigurationError):
        BalanceThresholds(expiring_within=timedelta(days=-1))


def test_summary_flags_say_not_asked_apart_from_no() -> None:
    """Summary.flags: None for a rule that is off, a bool for one that is on."""
    summary = BalanceSummary(thresholds=BalanceThresholds(below_eur=1), now=NOW)
    assert summary.flags(Decimal("0.5"), None) == (True, None)
    assert BalanceSummary().flags(Decimal("0.5"), None) == (None, None)


async def test_a_run_counts_low_and_expiring_keys_and_accounts(emulator: Emulator) -> None:
    """Over a real balances() run: keys counted each, accounts once (two keys of one low
    account: 2 keys, 1 account), failures never low, expiry against the injected now."""
    shared = {"id": "acct_shared", "balance_eur": "1.000000", "credits_expire_at": None}
    soon = (NOW + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    far = (NOW + timedelta(days=300)).isoformat().replace("+00:00", "Z")
    keys = [
        emulator.add_key(shared),
        emulator.add_key(shared),
        emulator.add_key({"balance_eur": "5.000000", "credits_expire_at": soon}),
        emulator.add_key({"balance_eur": "9.000000", "credits_expire_at": far}),
        emulator.add_key(fault=Fault.status(402)),
    ]
    rules = BalanceThresholds(below_eur=Decimal(5), expiring_within=timedelta(days=7))
    summary = BalanceSummary(thresholds=rules, now=NOW)
    async with AccountClient(base_url=emulator.url) as client, client.balances(keys) as results:
        async for result in results:
            summary.add(result)
    got = attrs.asdict(summary, filter=lambda a, _: a.name.startswith(("low", "expiring")))
    assert got == {"low": 2, "low_accounts": 1, "expiring": 1, "expiring_accounts": 1}
    assert summary.failed == 1
