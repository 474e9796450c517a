"""What a ``balances`` run writes: its rows (table, CSV, JSON lines, Prometheus), the live
progress bar, and the closing summary (on stderr, and as JSON).
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

from accountapi._exceptions import APIResponseValidationError, APIStatusError
from accountapi._keys import key_hint

from ._process import _stderr, exit_status
from ._text import money, safe_text

if TYPE_CHECKING:
    from rich.progress import Progress

    from accountapi._balance_results import BalanceOk, BalanceResult
    from accountapi._balance_summary import BalanceSummary

# -- rows ----------------------------------------------------------------------------------

_FORMATS: Final = ("table", "csv", "jsonl")
_BALANCES_FORMATS: Final = (*_FORMATS, "prometheus")
_COLUMNS: Final = (
    "line",
    "key_hint",
    "ok",
    "balance_eur",
    "held_eur",
    "error",
    "status",
    "code",
    "message",
    "request_id",
    "attempts",
    "elapsed_s",
    "account_id",
    "credits_expire_at",
    "low",
    "expiring",
)
_Flags = tuple[bool | None, bool | None]
_NOT_JUDGED: Final[_Flags] = (None, None)


def _judge(summary: BalanceSummary | None) -> Callable[[BalanceResult], _Flags]:
    """``(low, expiring)`` of a result under the run's thresholds: None where a rule is
    off or the key failed (a failed key is neither)."""

    def judge(result: BalanceResult) -> _Flags:
        p = result.profile
        if summary is None or p is None or not result.ok:
            return _NOT_JUDGED
        return summary.flags(p.balance_eur, p.credits_expire_at)

    if summary is None or summary.thresholds is None:
        return _not_judged  # no rule to judge by: every row is (None, None)
    return judge


def _not_judged(result: BalanceResult) -> _Flags:
    return _NOT_JUDGED


def result_record(result: BalanceResult, line: int, flags: _Flags = _NOT_JUDGED) -> dict[str, Any]:
    """One result as flat fields (the csv/jsonl columns); money as exact plain strings;
    ``low`` and ``expiring`` as ``flags`` says (None: that threshold was not given).

    Strings from the service (``code``, ``message``, ``request_id``) are its data, as
    sent (the message on one line); each writer makes them safe for its format.
    """
    error = result.error
    p = result.profile
    status = code = request_id = None
    if isinstance(error, APIStatusError):
        status, code, request_id = error.status, error.code, error.request_id
    elif isinstance(error, APIResponseValidationError):
        status, request_id = error.status, error.request_id
    return {
        "line": line,
        "key_hint": result.key_hint,
        "ok": result.ok,
        "balance_eur": None if p is None else money(p.balance_eur),
        "held_eur": None if p is None else money(p.held_eur),
        "error": None if error is None else type(error).__name__,
        "status": status,
        "code": code,
        "message": None if error is None else " ".join(error.message.split()),
        "request_id": request_id,
        "attempts": result.attempts,
        "elapsed_s": round(result.elapsed, 4),
        "account_id": None if p is None else p.id,
        "credits_expire_at": None
        if p is None or p.credits_expire_at is None
        else p.credits_expire_at.isoformat(),
        "low": flags[0],
        "expiring": flags[1],
    }


class _Writer(Protocol):
    def write(self, result: BalanceResult, line: int) -> None: ...

    def finish(self, summary: BalanceSummary, elapsed: float) -> None:
        """The run ended (not interrupted): write what waits for the end (prometheus)."""


class _RowWriter:
    """A writer that writes each row as it comes: nothing is left for the end."""

    def finish(self, summary: BalanceSummary, elapsed: float) -> None:
        pass


def _alert_cell(flags: _Flags) -> str:
    return ",".join(name for name, on in zip(("low", "expiring"), flags, strict=True) if on) or "-"


class _TableWriter(_RowWriter):
    """Fixed-width columns written row by row, so a million rows never sit in memory.

    With thresholds (``judge`` given) an ALERT column says ``low``, ``expiring`` or both."""

    def __init__(
        self, out: IO[str], last_line: int, judge: Callable[[BalanceResult], _Flags] | None = None
    ) -> None:
        self._out = out
        self._judge = judge
        width = max(6 if last_line == 0 else 4, len(str(last_line)))  # 0: not known yet
        alert = "" if judge is None else "{:<12}  "
        self._row = f"{{:>{width}}}  {{:<14}}  {{:<24}}  {{:>14}}  {{:>12}}  {alert}{{:>5}}  {{}}"
        self._started = False

    def write(self, result: BalanceResult, line: int) -> None:
        if not self._started:  # the header waits for the first row: no header on failure
            self._started = True
            alert = () if self._judge is None else ("ALERT",)
            self._line(
                "LINE", "KEY", "RESULT", "BALANCE EUR", "HELD EUR", *alert, "TRIES", "DETAIL"
            )
        p = result.profile
        error = result.error
        alert = () if self._judge is None else (_alert_cell(self._judge(result)),)
        self._line(
            line,
            result.key_hint,
            "ok" if error is None else type(error).__name__,
            "-" if p is None else money(p.balance_eur),
            "-" if p is None else money(p.held_eur),
            *alert,
            result.attempts,
            "" if error is None else safe_text(str(error)),
        )

    def _line(self, *cells: object) -> None:
        self._out.write(self._row.format(*cells).rstrip() + "\n")


class _CsvWriter(_RowWriter):
    """CSV records; text from the service has its control characters escaped (``\\x1b``)."""

    def __init__(
        self,
        out: IO[str],
        judge: Callable[[BalanceResult], _Flags],
        *,
        header_written: bool = False,
    ) -> None:
        self._csv = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
        self._judge = judge
        self._started = header_written

    def write(self, result: BalanceResult, line: int) -> None:
        if not self._started:
            self._started = True
            self._csv.writeheader()
        record = result_record(result, line, self._judge(result))
        for name in ("ok", "low", "expiring"):
            if record[name] is not None:
                record[name] = "true" if record[name] else "false"
        for name in ("code", "message", "request_id", "account_id"):
            if record[name] is not None:
                record[name] = safe_text(record[name])
        self._csv.writerow(record)


class _JsonlWriter(_RowWriter):
    """JSON lines; ``json.dumps`` escapes every control character (``\\u001b``).

    Everything else non-ASCII is escaped too (a lone surrogate from an undecodable header
    could not be written as UTF-8), except the hint's ellipsis, kept readable.
    """

    def __init__(self, out: IO[str], judge: Callable[[BalanceResult], _Flags]) -> None:
        self._out = out
        self._judge = judge
        # The last credits_expire_at written and its JSON text: many rows share a date.
        self._expires: datetime | None = None
        self._expires_tz: object = _NO_TZ
        self._expires_json = "null"

    def write(self, result: BalanceResult, line: int) -> None:
        flags = _NOT_JUDGED if self._judge is _not_judged else self._judge(result)
        if result.ok:
            self._out.write(self._ok_line(result, line, flags))
        else:
            text = json.dumps(result_record(result, line, flags)).replace(_ESCAPED, _ELLIPSIS)
            self._out.write(text + "\n")

    def _expires_text(self, expires: datetime | None) -> str:
        """``credits_expire_at`` as JSON: the last one's text again when it is the same
        moment in the same fixed-offset zone (so the same isoformat), else formatted."""
        if expires is None:
            return "null"
        # With the same tzinfo object, == compares the fields (not instants), fold aside.
        if (
            expires.tzinfo is self._expires_tz
            and type(expires) is datetime
            and expires == self._expires
        ):
            return self._expires_json
        text = _json_str(expires.isoformat())
        # Only a fixed offset (datetime.timezone) has the same offset at every date and fold.
        if type(expires) is datetime and type(expires.tzinfo) is timezone:
            self._expires, self._expires_tz, self._expires_json = expires, expires.tzinfo, text
        return text

    def _ok_line(self, result: BalanceOk, line: int, flags: _Flags) -> str:
        """An ok row as ``json.dumps(result_record(...))`` writes it, the ellipsis kept,
        with its newline, without the dict in between: the row most runs write nearly
        every time.

        The ellipsis is put back in the two strings that can hold one (the hint, the
        account id), not in the whole line: an escape never spans two fields, and money,
        dates and numbers hold no backslash. Amounts are quoted as they are: `money()`
        writes only digits, ``-``, ``.`` and the letters of NaN and Infinity, which JSON
        does not escape. tests/test_cli_edges.py and tests/test_cli_fast_paths.py pin the
        row as equal to json.dumps of its record."""
        p = result.profile
        elapsed = round(result.elapsed, 4)
        # One f-string, not str.format of a template: the template is parsed on every call.
        return (
            f'{{"line": {int.__repr__(line)}, '
            f'"key_hint": {_json_str(key_hint(result.key)).replace(_ESCAPED, _ELLIPSIS)}, '
            f'"ok": true, "balance_eur": "{money(p.balance_eur)}", '
            f'"held_eur": "{money(p.held_eur)}", "error": null, "status": null, '
            f'"code": null, "message": null, "request_id": null, '
            f'"attempts": {int.__repr__(result.attempts)}, '
            f'"elapsed_s": {repr(elapsed) if _isfinite(elapsed) else json.dumps(elapsed)}, '
            f'"account_id": {_json_str(p.id).replace(_ESCAPED, _ELLIPSIS)}, '
            f'"credits_expire_at": {self._expires_text(p.credits_expire_at)}, '
            f'"low": {_JSON_CONSTANTS[flags[0]]}, "expiring": {_JSON_CONSTANTS[flags[1]]}}}\n'
        )


# The JSON escape of the hint's ellipsis, written back as the character itself.
_ESCAPED: Final = "\\u2026"
_ELLIPSIS: Final = "\u2026"
_NO_TZ: Final = object()  # no credits_expire_at written yet: no tzinfo is this
_JSON_CONSTANTS: Final = {None: "null", True: "true", False: "false"}
_json_str: Final = json.encoder.encode_basestring_ascii  # json.dumps's own, for each str
_isfinite: Final = math.isfinite


def _writer(
    fmt: str,
    out: IO[str],
    last_line: int,
    summary: BalanceSummary,
    *,
    header_written: bool = False,
) -> _Writer:
    judge = _judge(summary)
    if fmt == "csv":
        return _CsvWriter(out, judge, header_written=header_written)
    if fmt == "jsonl":
        return _JsonlWriter(out, judge)
    if fmt == "prometheus":
        from ._prometheus import PrometheusWriter

        return PrometheusWriter(out, money)
    return _TableWriter(out, last_line, None if summary.thresholds is None else judge)


def _progress(enabled: bool | None) -> Progress | None:
    """A live bar on stderr, by default only when stderr is a terminal."""
    stderr = sys.stderr
    if enabled is None:
        enabled = stderr.isatty()
    if not enabled:
        return None
    from ._progress_bar import progress_bar  # rich.progress only for a bar shown

    return progress_bar(stderr)


def summary_record(
    summary: BalanceSummary, total: int, elapsed: float, interrupted: bool
) -> dict[str, object]:
    """The summary as JSON-ready data; money as exact strings, like every other output."""
    return {
        "checked": summary.total,
        "of": total,
        "interrupted": interrupted,
        "ok": summary.ok,
        "failed": summary.failed,
        "auth_failed": summary.auth_failed,
        "by_error": dict(sorted(summary.by_error.items())),
        "distinct_keys": summary.distinct_keys,
        "accounts": summary.accounts,
        "total_balance_eur": money(summary.total_balance_eur),
        "total_held_eur": money(summary.total_held_eur),
        **_threshold_record(summary),
        "elapsed_s": round(elapsed, 3),
        "exit_status": exit_status(summary),
    }


def _threshold_record(summary: BalanceSummary) -> dict[str, object]:
    """The thresholds of the run and what they found (null/0 when not given)."""
    from accountapi._thresholds import BalanceThresholds

    rules = summary.thresholds or BalanceThresholds()
    within = rules.expiring_within
    return {
        "below_eur": None if rules.below_eur is None else money(rules.below_eur),
        "expiring_within_days": None if within is None else within.days,
        "low": summary.low,
        "low_accounts": summary.low_accounts,
        "expiring": summary.expiring,
        "expiring_accounts": summary.expiring_accounts,
    }


def _write_summary_json(sink: IO[str], record: dict[str, object]) -> OSError | None:
    """Write the summary record; the error when it could not be (the summary on stderr
    stands, and the run exits 74 once it has ended)."""
    try:
        json.dump(record, sink, indent=2)
        sink.write("\n")
        sink.flush()
    except OSError as exc:
        return exc
    return None


def _print_summary(
    summary: BalanceSummary,
    total: int,
    elapsed: float,
    interrupted: bool = False,
    skipped: int = 0,
    resumed: int = 0,
) -> None:
    checked_now = summary.total - resumed
    rate = checked_now / elapsed if elapsed > 0 else 0.0
    head = (
        f"checked {summary.total} of {total} keys"
        if interrupted
        else f"checked {summary.total} keys"
    )
    lines = [
        f"{head} in {elapsed:.1f}s ({rate:,.0f} keys/s): {summary.ok} ok, {summary.failed} failed",
    ]
    if summary.by_error:
        parts = sorted(summary.by_error.items(), key=lambda item: (-item[1], item[0]))
        lines.append("  failed: " + ", ".join(f"{name} {count}" for name, count in parts))
    if skipped:
        lines.append(f"  skipped {skipped} line(s) that are not keys (--skip-invalid)")
    if resumed:
        lines.append(
            f"  resumed: {resumed} line(s) answered by an earlier run, {checked_now} checked now"
        )
    lines.append(
        f"  {summary.total} keys, {summary.distinct_keys} distinct, "
        f"of {summary.accounts} distinct accounts"
    )
    lines += _threshold_lines(summary)
    lines.append(
        f"  total over {summary.accounts} accounts (each counted once): "
        f"balance {money(summary.total_balance_eur)} EUR, held {money(summary.total_held_eur)} EUR"
    )
    _stderr().print("\n".join(lines), markup=False)


def _threshold_lines(summary: BalanceSummary) -> list[str]:
    rules = summary.thresholds
    if rules is None:
        return []
    lines = []
    if rules.below_eur is not None:
        lines.append(
            f"  low (balance below {money(rules.below_eur)} EUR): {summary.low} keys, "
            f"{summary.low_accounts} accounts"
        )
    if rules.expiring_within is not None:
        lines.append(
            f"  expiring (credits expire within {rules.expiring_within.days} days): "
            f"{summary.expiring} keys, {summary.expiring_accounts} accounts"
        )
    return lines
