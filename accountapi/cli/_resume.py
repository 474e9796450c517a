"""Reading back what an interrupted ``accountapi balances`` run wrote, to resume it.

``balances KEYS --format jsonl|csv --resume OUT`` appends its results to OUT. Run again
with the same arguments after an interruption (Ctrl-C, SIGTERM, SIGKILL, a lost
machine), it reads OUT first: every row names the keys file's line it answers, so the
lines already answered are skipped and only the rest are checked and appended. The end
result is the file an uninterrupted run would have written (rows in another order), with
no line missing and none twice.

A run killed while writing leaves at most one torn row, without its newline, at the
end: it is cut off here (and its line checked again). Rows are folded into the run's
[`BalanceSummary`][accountapi.BalanceSummary] as they are read, so the summary and the exit status
cover the whole keys file, not only the part checked this time. Memory: one bit per line.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from array import array
from collections.abc import Iterator, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from accountapi._keys import key_hint

if TYPE_CHECKING:
    from accountapi._balance_summary import BalanceSummary

__all__ = ["Previous", "ResumeError", "read_previous"]

_MAX_ROW: Final = 64 * 1024  # a row is a few hundred bytes; more is not this command's output


class ResumeError(Exception):
    """The file to resume from cannot be used; the message is one line for the operator."""


class Previous:
    """Which lines of the keys file an earlier run already answered."""

    __slots__ = ("_done", "_hints", "csv_header", "last_line")

    def __init__(self) -> None:
        self._done = bytearray()  # bit n: line n answered
        # 16 bits of each answered line's key hint, to notice a keys file that changed
        # (a line inserted or removed) since the rows were written.
        self._hints = array("H")
        self.last_line = 0  # the highest line answered
        self.csv_header = False  # a CSV file that already has its header

    def is_done(self, line: int) -> bool:
        index = line >> 3
        return index < len(self._done) and bool(self._done[index] & (1 << (line & 7)))

    def same_key(self, line: int, key: str) -> bool:
        """Whether the row for ``line`` was written for this key (by its hint)."""
        return line >= len(self._hints) or self._hints[line] == _hint_bits(key_hint(key))

    def _mark(self, line: int) -> bool:
        """Mark ``line`` answered; False when it already was (a repeated row)."""
        index = line >> 3
        if index >= len(self._done):
            self._done.extend(bytes(index + 1 - len(self._done)))
        bit = 1 << (line & 7)
        if self._done[index] & bit:
            return False
        self._done[index] |= bit
        self.last_line = max(self.last_line, line)
        return True


def read_previous(
    path: Path, fmt: str, columns: Sequence[str], summary: BalanceSummary
) -> Previous:
    """Read ``path`` (missing: nothing done yet), cut a torn last row, fold rows into
    ``summary``; `ResumeError` when it is not this command's ``fmt`` output."""
    previous = Previous()
    try:
        f = open(path, "r+b")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return previous
    except OSError as exc:
        raise ResumeError(f"cannot read --resume {path}: {exc.strerror or exc}") from None
    with f:
        if not os.path.isfile(path):
            raise ResumeError(f"--resume {path} is not a regular file")
        complete = 0  # bytes up to the end of the last complete row
        for number, raw in enumerate(_lines(f), 1):
            if not raw.endswith(b"\n"):
                break  # torn by an interruption: cut below, its line checked again
            complete += len(raw)
            text = _decode(path, number, raw)
            if fmt == "csv" and number == 1:
                if text != ",".join(columns):
                    raise ResumeError(
                        f"--resume {path} is not a CSV output of `accountapi balances` (its "
                        "header differs: another format, or an older version's columns)"
                    )
                previous.csv_header = True
                continue
            row = (
                _jsonl_row(path, number, text)
                if fmt == "jsonl"
                else _csv_row(path, number, text, columns)
            )
            _fold(path, number, row, previous, summary)
        size = f.seek(0, os.SEEK_END)
        if complete < size:
            f.truncate(complete)
    return previous


def _hint_bits(hint: str) -> int:
    return zlib.crc32(hint.encode("utf-8", "surrogateescape")) & 0xFFFF


def _lines(f: IO[bytes]) -> Iterator[bytes]:
    while True:
        raw = f.readline(_MAX_ROW + 1)
        if not raw:
            return
        if len(raw) > _MAX_ROW and not raw.endswith(b"\n"):
            raise ResumeError("a row of the --resume file is too long to be a result row")
        yield raw


def _decode(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ResumeError(f"--resume {path} line {number}: not UTF-8 text") from None


def _not_a_row(path: Path, number: int, fmt: str) -> ResumeError:
    return ResumeError(
        f"--resume {path} line {number}: not a result row of `accountapi balances "
        f"--format {fmt}` (is it another file, or another --format?)"
    )


def _jsonl_row(path: Path, number: int, text: str) -> dict[str, Any]:
    try:
        row = json.loads(text)
    except ValueError:
        raise _not_a_row(path, number, "jsonl") from None
    if not isinstance(row, dict):
        raise _not_a_row(path, number, "jsonl")
    return row


def _csv_row(path: Path, number: int, text: str, columns: Sequence[str]) -> dict[str, Any]:
    try:
        (cells,) = list(csv.reader([text]))
    except (csv.Error, ValueError):
        raise _not_a_row(path, number, "csv") from None
    if len(cells) != len(columns):
        raise _not_a_row(path, number, "csv")
    row: dict[str, Any] = {name: (cell or None) for name, cell in zip(columns, cells, strict=True)}
    for name in ("ok", "low", "expiring"):
        row[name] = {"true": True, "false": False}.get(cells[columns.index(name)])
    return row


def _fold(
    path: Path, number: int, row: dict[str, Any], previous: Previous, summary: BalanceSummary
) -> None:
    """Mark the row's line answered and count it into ``summary`` (a repeat only once)."""
    line = row.get("line")
    hint = row.get("key_hint")
    if isinstance(line, str) and line.isdigit():
        line = int(line)
    ok = row.get("ok")
    if not isinstance(line, int) or isinstance(line, bool) or line < 1 or not isinstance(ok, bool):
        raise ResumeError(f"--resume {path} line {number}: a row without its line number or result")
    if not isinstance(hint, str):
        raise ResumeError(f"--resume {path} line {number}: a row without its key hint")
    if not previous._mark(line):
        return
    hints = previous._hints
    if line >= len(hints):
        hints.extend(array("H", bytes(2 * (line + 1 - len(hints)))))
    hints[line] = _hint_bits(hint)
    error = row.get("error")
    status = row.get("status")
    try:
        balance = None if row.get("balance_eur") is None else Decimal(row["balance_eur"])
        held = None if row.get("held_eur") is None else Decimal(row["held_eur"])
    except (InvalidOperation, TypeError):
        raise ResumeError(
            f"--resume {path} line {number}: an amount that is not a number"
        ) from None
    expires = _expiry(path, number, row) if ok else None
    if ok:
        _check_flags(path, number, row, summary, balance, expires)
    summary._add_recorded(
        error=None if ok else str(error or "error"),
        auth_failed=str(status) == "401",
        account_id=row.get("account_id"),
        balance_eur=balance,
        held_eur=held,
        credits_expire_at=expires,
    )


def _expiry(path: Path, number: int, row: dict[str, Any]) -> datetime | None:
    text = row.get("credits_expire_at")
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise ResumeError(
            f"--resume {path} line {number}: an expiry that is not a timestamp"
        ) from None


def _check_flags(
    path: Path,
    number: int,
    row: dict[str, Any],
    summary: BalanceSummary,
    balance: Decimal | None,
    expires: datetime | None,
) -> None:
    """Refuse a row whose ``low``/``expiring`` the thresholds of this run would not write:
    the file must read as one run with one set of thresholds wrote it."""
    low, expiring = summary.flags(balance or Decimal(0), expires)
    for name, option, want in (
        ("low", "--below", low),
        ("expiring", "--expiring-within", expiring),
    ):
        got = row.get(name)
        if got != want or type(got) is not type(want):
            raise ResumeError(
                f"--resume {path} line {number}: its {name} ({_json(got)}) is not what "
                f"{option} gives now ({_json(want)}): resume with the thresholds it was "
                "written with, or start a new OUTPUT"
            )


def _json(value: object) -> str:
    return json.dumps(value)
