"""The command line's fast paths against what they stand in for: a keys file's bare key
lines read a block at a time (the same keys, line numbers, reports and file position as
line by line), money with six decimals, key hints, and JSONL rows (the ellipsis put back
field by field, a repeated credits_expire_at written from the last one's text).
"""

from __future__ import annotations

import decimal
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accountapi import BalanceOk, Profile
from accountapi._keys import key_hint
from accountapi.cli._keyfile import _bare_keys, _file_key_lines, _key_lines, _raw_lines
from accountapi.cli._process import CLIError
from accountapi.cli._text import money
from accountapi.cli._writers import _JsonlWriter, result_record

_KEY_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_LINES = st.one_of(
    st.text(_KEY_CHARS, min_size=1, max_size=40).map(str.encode),  # a bare key
    st.text(_KEY_CHARS, min_size=505, max_size=520).map(str.encode),  # near 512
    st.sampled_from(
        [
            b"",
            b"#",
            b"# a comment",
            b"  dpct_padded_key_1234  ",
            b"dpct_crlf_key_123456\r",
            b"\xef\xbb\xbfdpct_bom_key_123456",
            b"\xff\xfed\x00p\x00",
            b"dpct_caf\xc3\xa9_key_1234",
            b"dpct_tab\tkey_12345678",
            b"dpct_del\x7fkey_12345678",
            b"x" * 5000,
            b"\x1c\x1d",
        ]
    ),
    st.binary(max_size=30),
)


def _read(
    data: bytes, size: int | None, *, fast: bool, block: int
) -> tuple[list[tuple[int, str]], list[int], str | None, int]:
    """What reading ``data`` gives: the keys, the lines reported, the error, the position."""
    f = io.BytesIO(b"--" + data)
    f.seek(2)  # not at the start of the file, as after an earlier read
    reported: list[int] = []

    def report(name: str, number: int) -> None:
        reported.append(number)

    if fast:
        lines = _file_key_lines("keys.txt", f, size, report, block)
    else:
        lines = _key_lines("keys.txt", _raw_lines(f, size), report)
    keys: list[tuple[int, str]] = []
    try:
        keys.extend(lines)
    except CLIError as exc:
        return keys, reported, exc.message, -1
    return keys, reported, None, f.tell()


@settings(max_examples=400, deadline=None)
@given(
    lines=st.lists(_LINES, max_size=30),
    end=st.sampled_from([b"\n", b"", b"\r\n"]),
    size=st.one_of(st.none(), st.integers(min_value=0, max_value=3000)),
    block=st.sampled_from([1, 7, 64, 600, 4096, 64 * 1024]),
)
@example(lines=[b"dpct_one_key_1234"] * 3, end=b"\n", size=None, block=64 * 1024)
@example(lines=[b"a" * 512, b"b" * 513], end=b"\n", size=None, block=64 * 1024)
def test_the_fast_path_reads_as_line_by_line(
    lines: list[bytes], end: bytes, size: int | None, block: int
) -> None:
    data = b"\n".join(lines) + (end if lines else b"")
    slow = _read(data, size, fast=False, block=block)
    assert _read(data, size, fast=True, block=block) == slow


@pytest.mark.parametrize(
    ("block", "keys"),
    [
        (b"dpct_a_1234567890\nb\n", ["dpct_a_1234567890", "b"]),
        (b"a\n\nb\n", None),  # blank line
        (b"#c\nb\n", None),
        (b"b\n#c\n", None),
        (b"\nb\n", None),
        (b"a b\n", None),
        (b"a\r\n", None),
        (("k" * 512 + "\n").encode(), ["k" * 512]),
        (("k" * 513 + "\n").encode(), None),
    ],
)
def test_bare_keys_takes_only_bare_key_lines(block: bytes, keys: list[str] | None) -> None:
    assert _bare_keys(block) == keys


# -- money and key hints: the quicker forms against the ones they replaced ------------------

_CONTEXT = decimal.Context(prec=decimal.MAX_PREC)


def _money_before(value: Decimal) -> str:
    """`money()` as it was written before its fast path for six decimals."""
    exponent = value.as_tuple().exponent
    if exponent == -6:
        return format(value, "f")
    if not value.is_finite():
        return str(value)
    value = value.normalize(_CONTEXT)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -6:
        value = value.quantize(Decimal("0.000001"), context=_CONTEXT)
    return format(value, "f")


_DECIMALS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False, places=6),
    st.builds(
        lambda sign, digits, exponent: Decimal((sign, digits, exponent)),
        st.sampled_from([0, 1]),
        st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=30).map(tuple),
        st.integers(min_value=-40, max_value=40),
    ),
)


@settings(max_examples=1000, deadline=None)
@given(value=_DECIMALS, capitals=st.sampled_from([0, 1]))
@example(value=Decimal("1.23456E+10"), capitals=1)
@example(value=Decimal("1.2E+123"), capitals=0)
@example(value=Decimal("-0.000000"), capitals=1)
def test_money_is_as_before(value: Decimal, capitals: int) -> None:
    with decimal.localcontext() as context:
        context.capitals = capitals  # str() of a Decimal writes its exponent by this
        assert money(value) == _money_before(value)


def _hint_before(key: str) -> str:
    """`key_hint()` as it was written before it stopped copying the key."""
    if len(key) < 12 or not key.isascii():
        return "…"
    prefix, sep, _ = key.partition("_")
    head = prefix + sep if sep and len(prefix) <= 8 else ""
    if len(key) - len(head) < 12:  # the rule added later: at least 8 characters hidden
        head = ""
    return f"{head}…{key[-4:]}"


@settings(max_examples=1000, deadline=None)
@given(key=st.text(alphabet=st.sampled_from("_aZ9-é "), max_size=30) | st.text(max_size=30))
@example(key="_" + "a" * 20)
@example(key="abcdefgh_" + "a" * 20)
@example(key="abcdefghi_" + "a" * 20)
def test_key_hint_is_as_before(key: str) -> None:
    assert key_hint(key) == _hint_before(key)


# -- JSONL ok rows: a run of rows through one writer against json.dumps of each record ------

_BERLIN = ZoneInfo("Europe/Berlin")
# One instant's wall time in many zones: equal fields, different offsets (and so text).
_WALL = datetime(2023, 10, 29, 2, 30)
_EXPIRIES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            _WALL.replace(tzinfo=UTC),
            _WALL.replace(tzinfo=timezone(timedelta(0), "Z")),
            _WALL.replace(tzinfo=timezone(timedelta(hours=2))),
            _WALL.replace(tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
            _WALL.replace(tzinfo=_BERLIN),  # ambiguous: +02:00 with fold 0 ...
            _WALL.replace(tzinfo=_BERLIN, fold=1),  # ... +01:00 with fold 1, yet ==
            _WALL.replace(tzinfo=UTC, fold=1),
            _WALL.replace(tzinfo=UTC, microsecond=1),
            _WALL,  # naive: the decoder never gives one, the writer still must not mix it up
        ]
    ),
    st.datetimes(
        timezones=st.just(UTC)
        | st.just(_BERLIN)
        | st.builds(
            timezone,
            st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timedelta(minutes=m)),
        )
    ),
)
# Text that meets the ellipsis's escape: the character itself, a backslash before "u2026".
_AWKWARD = st.lists(
    st.sampled_from(["a", "\\", "u2026", "\u2026", '"', "\x1b", "é", "2"]), max_size=8
).map("".join)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E)) | _AWKWARD,  # key
            st.text() | _AWKWARD,  # account id
            _EXPIRIES,
            st.floats(min_value=0, max_value=1e6) | st.sampled_from([float("nan"), float("inf")]),
            _DECIMALS,  # balance: every amount money() may be given, NaN and Infinity too
            _DECIMALS,  # held
        ),
        min_size=1,
        max_size=12,
    )
)
def test_jsonl_ok_rows_are_json_dumps_of_their_records(
    rows: list[tuple[str, str, datetime | None, float, Decimal, Decimal]],
) -> None:
    """Row after row through one writer (so each row meets what the writer kept of the
    last), every ok row is json.dumps of its record with the hint's ellipsis put back."""
    out = io.StringIO()
    writer = _JsonlWriter(out, lambda _: (None, None))
    expected = []
    for line, (key, account_id, expires, elapsed, balance, held) in enumerate(rows, 1):
        profile = Profile(
            id=account_id,
            email="a@example.test",
            balance_eur=balance,
            held_eur=held,
            credit_limit_cents=0,
            created_at=datetime(2025, 1, 1, tzinfo=UTC),
            email_verified=True,
            pending_credit_notice=False,
            prompt_analysis_opt_in=False,
            two_factor_enabled=False,
            credits_expire_at=expires,
        )
        result = BalanceOk(key=key, index=line - 1, profile=profile, elapsed=elapsed)
        writer.write(result, line)
        record = result_record(result, line)
        expected.append(json.dumps(record).replace("\\u2026", "\u2026") + "\n")
    assert out.getvalue() == "".join(expected)
