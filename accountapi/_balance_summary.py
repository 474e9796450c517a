"""[`BalanceSummary`][accountapi.BalanceSummary]: counts and exact per-account EUR totals over a run of balance results."""

from __future__ import annotations

import decimal
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import attrs

from ._balance_results import BalanceOk, BalanceResult
from ._exceptions import AuthenticationError, MalformedAPIKeyError
from ._thresholds import BalanceThresholds, flags

__all__ = ["BalanceSummary"]

# Decimal addition at this precision never rounds: sums of money stay exact.
_EXACT: Final = decimal.Context(prec=decimal.MAX_PREC, traps=[decimal.Inexact])


@attrs.define(slots=True, kw_only=True)
class BalanceSummary:
    """Counts by outcome and error class, and exact EUR totals per account, over a run of results.

    Build one and [`add()`][accountapi.BalanceSummary.add] each result as it arrives, or ``await
    BalanceSummary.collect(results)``. ``total``, ``ok``, ``failed``, ``auth_failed`` and
    ``by_error`` count results (one per input line); ``distinct_keys`` counts the different
    keys among them and ``accounts`` the different accounts (profile ``id``) behind the ok
    ones.

    The totals are money per **account**, not per key: an account reached through two
    keys, or a key listed twice, is added once, with the first ok answer seen for it.
    They are `Decimal` sums computed without rounding.

    To tell repeats apart the summary keeps one account id per distinct account and one
    64-bit hash per distinct key (never the key itself): about 100 bytes per distinct key
    or account, so ~100 MB for a million distinct keys. Two different keys share a hash
    with a chance of about 1 in 3*10^7 at a million keys; ``distinct_keys`` would then be
    one short. Money never depends on the key hashes, only on exact account ids.

    With ``thresholds`` ([`BalanceThresholds`][accountapi.BalanceThresholds]), ``low`` and ``expiring``
    count the ok results (keys) that are low or expiring, and ``low_accounts`` and
    ``expiring_accounts`` the accounts, each judged once by the first ok answer seen for
    it, as the totals are. Expiry is judged against ``now`` (an aware datetime, the same
    moment for the whole run) or, when it is None, the wall clock at each result.
    """

    total: int = 0
    """Results added (one per input line)."""
    ok: int = 0
    """Results with a profile."""
    failed: int = 0
    """Results with an error."""
    auth_failed: int = 0
    """Failed results whose error was an authentication error (401)."""
    by_error: dict[str, int] = attrs.Factory(dict)
    """Failed results by error class name."""
    total_balance_eur: Decimal = Decimal(0)
    """Exact sum of ``balance_eur``, once per account."""
    total_held_eur: Decimal = Decimal(0)
    """Exact sum of ``held_eur``, once per account."""
    thresholds: BalanceThresholds | None = None
    """The low/expiring rules to count by, or ``None`` for none."""
    now: datetime | None = None
    """The moment expiry is judged against (aware), or ``None`` for the wall clock at each result."""
    low: int = 0
    """Ok results (keys) whose balance is low."""
    expiring: int = 0
    """Ok results (keys) whose credits are expiring."""
    low_accounts: int = 0
    """Accounts whose balance is low, each judged once."""
    expiring_accounts: int = 0
    """Accounts whose credits are expiring, each judged once."""
    _key_hashes: set[int] = attrs.field(factory=set, init=False, repr=False, eq=False)
    _account_ids: set[str] = attrs.field(factory=set, init=False, repr=False, eq=False)

    @property
    def distinct_keys(self) -> int:
        """How many different keys the results were for."""
        return len(self._key_hashes)

    @property
    def accounts(self) -> int:
        """How many different accounts (profile ``id``) the ok results belong to."""
        return len(self._account_ids)

    def add(self, result: BalanceResult) -> None:
        """Count one result; add its account's money unless that account was seen already."""
        self.total += 1
        try:
            self._key_hashes.add(hash(result.key))
        except TypeError:  # a caller's unhashable non-key, reported as malformed
            self._key_hashes.add(id(result.key))
        if isinstance(result, BalanceOk):
            profile = result.profile
            self.ok += 1
            new = profile.id not in self._account_ids
            if new:
                self._account_ids.add(profile.id)
                self.total_balance_eur = _EXACT.add(self.total_balance_eur, profile.balance_eur)
                self.total_held_eur = _EXACT.add(self.total_held_eur, profile.held_eur)
            if self.thresholds is not None:  # else nothing to count (spares the call)
                self._count_flags(profile.balance_eur, profile.credits_expire_at, new_account=new)
            return
        self.failed += 1
        name = type(result.error).__name__
        self.by_error[name] = self.by_error.get(name, 0) + 1
        if isinstance(result.error, AuthenticationError | MalformedAPIKeyError):
            self.auth_failed += 1

    def _add_recorded(
        self,
        *,
        error: str | None,
        auth_failed: bool,
        account_id: str | None,
        balance_eur: Decimal | None,
        held_eur: Decimal | None,
        credits_expire_at: datetime | None = None,
    ) -> None:
        """Count a result recorded by an earlier run (the command line's ``--resume``),
        as [`add()`][accountapi.BalanceSummary.add] would have; its key is counted by `_add_key()`."""
        self.total += 1
        if error is None:
            self.ok += 1
            new = account_id is not None and account_id not in self._account_ids
            if new and account_id is not None:
                self._account_ids.add(account_id)
                self.total_balance_eur = _EXACT.add(self.total_balance_eur, balance_eur or 0)
                self.total_held_eur = _EXACT.add(self.total_held_eur, held_eur or 0)
            self._count_flags(balance_eur or Decimal(0), credits_expire_at, new_account=new)
            return
        self.failed += 1
        self.by_error[error] = self.by_error.get(error, 0) + 1
        if auth_failed:
            self.auth_failed += 1

    def flags(
        self, balance_eur: Decimal, credits_expire_at: datetime | None
    ) -> tuple[bool | None, bool | None]:
        """``(low, expiring)`` for an ok answer under this summary's thresholds, judged
        at ``now``; each None when its rule is off (no thresholds, or that one not set)."""
        return flags(self.thresholds, balance_eur, credits_expire_at, self.now or _utcnow())

    def _count_flags(
        self, balance_eur: Decimal, credits_expire_at: datetime | None, *, new_account: bool
    ) -> None:
        if self.thresholds is None:
            return
        low, expiring = self.flags(balance_eur, credits_expire_at)
        if low:
            self.low += 1
            self.low_accounts += new_account
        if expiring:
            self.expiring += 1
            self.expiring_accounts += new_account

    def _add_key(self, key: str) -> None:
        """Count the key of a result recorded by an earlier run among the distinct keys."""
        self._key_hashes.add(hash(key))

    @classmethod
    async def collect(cls, results: AsyncIterable[BalanceResult]) -> BalanceSummary:
        """Consume ``results`` (e.g. ``client.balances(keys)``) and summarise them."""
        summary = cls()
        async for result in results:
            summary.add(result)
        return summary


def _utcnow() -> datetime:
    return datetime.now(UTC)
