"""Retry-After parsing: both RFC forms, the ms variant, and junk that must fall back."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from accountapi._headers import MAX_RETRY_AFTER, parse_retry_after, request_id_from

NOW = 1_800_000_000.0


def h(**values: str) -> CIMultiDict[str]:
    return CIMultiDict({k.replace("_", "-"): v for k, v in values.items()})


@pytest.mark.parametrize(
    ("raw", "wait"), [("0", 0.0), ("1", 1.0), ("120", 120.0), (" 7 ", 7.0), ("0.5", 0.5)]
)
def test_delta_seconds(raw: str, wait: float) -> None:
    """Delta-seconds are read as seconds."""
    assert parse_retry_after(h(Retry_After=raw), NOW) == wait


def test_http_date_in_the_future() -> None:
    """An HTTP-date gives the seconds from now until then."""
    when = datetime.fromtimestamp(NOW + 30, tz=UTC)
    assert parse_retry_after(h(Retry_After=format_datetime(when, usegmt=True)), NOW) == 30.0


def test_http_date_in_the_past_means_now() -> None:
    """A date already passed means no wait, not a negative one."""
    when = datetime.fromtimestamp(NOW - 30, tz=UTC)
    assert parse_retry_after(h(Retry_After=format_datetime(when, usegmt=True)), NOW) == 0.0


def test_retry_after_ms() -> None:
    """retry-after-ms is read as milliseconds."""
    assert parse_retry_after(h(retry_after_ms="250"), NOW) == 0.25


def test_longer_of_both_wins() -> None:
    """With both headers, the longer wait is kept so the client is never early."""
    assert parse_retry_after(h(Retry_After="1", retry_after_ms="1500"), NOW) == 1.5
    assert parse_retry_after(h(Retry_After="2", retry_after_ms="1500"), NOW) == 2.0


def test_header_names_are_case_insensitive() -> None:
    """aiohttp's headers are case-insensitive, and so is the lookup."""
    assert parse_retry_after(CIMultiDict({"retry-after": "3"}), NOW) == 3.0


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "inf",
        "nan",
        "-10",
        "1e3",
        "0x10",
        "soon",
        "9" * 40,
        "Fri, 01 Jan 100000 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Mon, 32 Foo 2020 25:61:61 GMT",
        str(int(MAX_RETRY_AFTER) + 1),
    ],
)
def test_malformed_values_fall_back(raw: str) -> None:
    """Junk, negative, non-finite and absurd values give None (use backoff), never an exception."""
    assert parse_retry_after(h(Retry_After=raw), NOW) is None


def test_absent() -> None:
    """No header, no wait."""
    assert parse_retry_after(h(), NOW) is None


@given(st.text(max_size=60))
def test_never_raises_on_any_text(raw: str) -> None:
    """Any header text yields a finite, non-negative wait within bounds, or None."""
    for headers in (h(Retry_After=raw), h(retry_after_ms=raw)):
        wait = parse_retry_after(headers, NOW)
        assert wait is None or 0.0 <= wait <= MAX_RETRY_AFTER


def test_request_id_header() -> None:
    """X-Request-Id is read and bounded."""
    assert request_id_from(h(X_Request_Id="req_1")) == "req_1"
    assert request_id_from(h()) is None
    assert len(request_id_from(h(X_Request_Id="r" * 1000)) or "") == 200
