"""``accountapi balances --format prometheus``: the results as Prometheus text exposition.

One gauge family per field, written whole when the run ends (a family's samples must be
together, and results arrive in any order). Money is printed exactly from its
`Decimal`, never through a float. The text is also valid OpenMetrics
(gauges, no ``_total`` names) once a reader that wants it appends ``# EOF``.

**One sample per account.** Several keys of one account report the same money, so the
account's gauges appear once, labelled ``account_id`` and the ``key_hint`` of its key on
the earliest line of the keys file (stable whatever order the answers came in), with
``accountapi_account_keys`` saying how many keys answered for it. Each key's own outcome
is ``accountapi_check_success``, labelled by its ``line`` too, so two keys with the same
hint never make one series. Keys are never written, only hints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from accountapi._balance_results import BalanceResult
    from accountapi._balance_summary import BalanceSummary
    from accountapi._models import Profile

__all__ = ["PrometheusWriter"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
Money = Callable[[Decimal], str]


@attrs.define
class _Account:
    line: int
    hint: str
    profile: Profile
    keys: int = 1


@attrs.frozen
class _Check:
    line: int
    hint: str
    account_id: str
    ok: bool


def escape_label(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote and newline
    escaped; a lone surrogate (undecodable input) replaced, so the text is valid UTF-8."""
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def timestamp(moment: datetime) -> str:
    """Seconds since the Unix epoch, exactly (microseconds as decimals), for a gauge."""
    delta = moment - _EPOCH
    seconds = Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds).scaleb(-6)
    return format(seconds.normalize() if seconds else Decimal(0), "f")


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{escape_label(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


class PrometheusWriter:
    """Collects the results of a run; `finish()` writes them as one exposition."""

    def __init__(self, out: IO[str], money: Money) -> None:
        self._out = out
        self._money = money
        self._accounts: dict[str, _Account] = {}
        self._checks: list[_Check] = []

    def write(self, result: BalanceResult, line: int) -> None:
        p = result.profile
        account_id = "" if p is None or not result.ok else p.id
        self._checks.append(_Check(line, result.key_hint, account_id, result.ok))
        if p is None or not result.ok:
            return
        seen = self._accounts.get(p.id)
        if seen is None:
            self._accounts[p.id] = _Account(line, result.key_hint, p)
            return
        seen.keys += 1
        if line < seen.line:
            seen.line, seen.hint, seen.profile = line, result.key_hint, p

    def finish(self, summary: BalanceSummary, elapsed: float) -> None:
        """Write every family: per account, per key, then the run's own gauges."""
        accounts = sorted(self._accounts.values(), key=lambda a: a.line)
        families = [
            *self._account_families(accounts, summary),
            self._family(
                "accountapi_check_success",
                "1 when the key's profile was fetched, 0 when the check failed.",
                (
                    (
                        _labels(account_id=c.account_id, key_hint=c.hint, line=str(c.line)),
                        str(int(c.ok)),
                    )
                    for c in sorted(self._checks, key=lambda c: c.line)
                ),
            ),
            *self._run_families(summary, elapsed),
        ]
        # A family at a time, each flushed: a reader that goes away (`| head`) makes the
        # next write fail, so the run says it stopped early (one large write to a pipe
        # can be cut short without an error).
        for family in families:
            self._out.write(family)
            self._out.flush()

    def _account_families(self, accounts: list[_Account], summary: BalanceSummary) -> list[str]:
        def each(value: Callable[[_Account], str | None]) -> Iterable[tuple[str, str]]:
            for a in accounts:
                got = value(a)
                if got is not None:
                    yield _labels(account_id=a.profile.id, key_hint=a.hint), got

        money = self._money
        families = [
            self._family(
                "accountapi_balance_eur",
                "Spendable balance in EUR (pending holds already taken off).",
                each(lambda a: money(a.profile.balance_eur)),
            ),
            self._family(
                "accountapi_held_eur",
                "EUR held by running generations.",
                each(lambda a: money(a.profile.held_eur)),
            ),
            self._family(
                "accountapi_credit_limit_eur",
                "Credit limit in EUR.",
                each(lambda a: money(Decimal(a.profile.credit_limit_cents).scaleb(-2))),
            ),
            self._family(
                "accountapi_credits_expire_timestamp_seconds",
                "When the credits expire, in seconds since the epoch (absent: never).",
                each(lambda a: _expiry(a.profile)),
            ),
            self._family(
                "accountapi_account_keys",
                "Keys of the keys file that answered for the account.",
                each(lambda a: str(a.keys)),
            ),
        ]
        rules = summary.thresholds
        if rules is not None and rules.below_eur is not None:
            families.append(
                self._family(
                    "accountapi_low",
                    f"1 when the balance is below {money(rules.below_eur)} EUR (--below).",
                    each(lambda a: _flag(_flags(summary, a.profile)[0])),
                )
            )
        if rules is not None and rules.expiring_within is not None:
            families.append(
                self._family(
                    "accountapi_expiring",
                    "1 when the credits expire within the --expiring-within window.",
                    each(lambda a: _flag(_flags(summary, a.profile)[1])),
                )
            )
        return families

    def _run_families(self, summary: BalanceSummary, elapsed: float) -> list[str]:
        run = [
            ("keys_checked", "Keys (lines) checked.", summary.total),
            ("keys_failed", "Keys whose check failed.", summary.failed),
            ("keys_low", "Keys whose balance is below --below.", summary.low),
            (
                "keys_expiring",
                "Keys whose credits expire within --expiring-within.",
                summary.expiring,
            ),
            ("accounts", "Distinct accounts behind the keys that answered.", summary.accounts),
            # Counted from the per-account samples above (each account judged by its
            # earliest line's answer), so the exposition never contradicts itself when
            # two keys of one account answered differently.
            (
                "accounts_low",
                "Accounts whose balance is below --below (accountapi_low == 1).",
                sum(_flags(summary, a.profile)[0] is True for a in self._accounts.values()),
            ),
            (
                "accounts_expiring",
                "Accounts whose credits expire soon (accountapi_expiring == 1).",
                sum(_flags(summary, a.profile)[1] is True for a in self._accounts.values()),
            ),
        ]
        families = [
            self._family(f"accountapi_run_{name}", help_text, [("", str(value))])
            for name, help_text, value in run
        ]
        families.append(
            self._family(
                "accountapi_run_duration_seconds",
                "How long the run took.",
                [("", f"{elapsed:.3f}")],
            )
        )
        families.append(
            self._family(
                "accountapi_run_completion_timestamp_seconds",
                "When the run ended, in seconds since the epoch.",
                [("", f"{time.time():.3f}")],
            )
        )
        return families

    @staticmethod
    def _family(name: str, help_text: str, samples: Iterable[tuple[str, str]]) -> str:
        lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} gauge"]
        lines += [f"{name}{labels} {value}" for labels, value in samples]
        return "\n".join(lines) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _expiry(profile: Profile) -> str | None:
    expires = profile.credits_expire_at
    return None if expires is None else timestamp(expires)


def _flags(summary: BalanceSummary, profile: Profile) -> tuple[bool | None, bool | None]:
    return summary.flags(profile.balance_eur, profile.credits_expire_at)


def _flag(value: bool | None) -> str:
    return "1" if value else "0"
