"""Decoding: exact money, aware timestamps, tolerant of new fields, strict on types."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from accountapi import AccountClient, APIResponseValidationError, Profile
from accountapi._decode import decode_profile
from accountapi.testing import Emulator, default_profile


def body(**overrides: Any) -> bytes:
    user = default_profile()
    user.update(overrides)
    return json.dumps({"user": user}).encode()


def test_money_keeps_every_digit() -> None:
    """EUR strings become Decimals with their exact digits, trailing zeros included."""
    p = decode_profile(
        body(balance_eur="9.955000", held_eur="0.000000", free_trial_pending_eur="2.50")
    )
    assert isinstance(p.balance_eur, Decimal)
    assert str(p.balance_eur) == "9.955000"
    assert str(p.held_eur) == "0.000000"
    assert p.free_trial_pending_eur == Decimal("2.50")
    assert str(p.free_trial_pending_eur) == "2.50"


@pytest.mark.parametrize(
    "wire", ["0.000000", "-0.000000", "123456789012345678901234567890.123456", "-5.5", "7"]
)
def test_money_edge_values_exact(wire: str) -> None:
    """Zero, negative zero, huge and integral balances survive exactly."""
    assert str(decode_profile(body(balance_eur=wire)).balance_eur) == wire


@pytest.mark.parametrize(
    "wire", [9.955, 10, None, "1e3", "NaN", "Infinity", " 1.00", "1.00 ", "1,00", "", "+1.0", True]
)
def test_money_rejects_non_decimal_strings(wire: object) -> None:
    """A number, null, exponent, NaN, padding or comma is an error naming user.balance_eur."""
    with pytest.raises(APIResponseValidationError) as info:
        decode_profile(body(balance_eur=wire))
    assert info.value.path == "user.balance_eur"
    assert "user.balance_eur" in str(info.value)


def test_timestamps_are_aware() -> None:
    """'Z', offsets and offset-less timestamps all decode to aware datetimes."""
    p = decode_profile(
        body(created_at="2025-01-02T03:04:05Z", credits_expire_at="2027-01-01T01:00:00+01:00")
    )
    assert p.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert p.credits_expire_at == datetime(2027, 1, 1, 0, 0, tzinfo=UTC)
    assert p.credits_expire_at.utcoffset() == timedelta(hours=1)
    naive = decode_profile(body(created_at="2025-01-02T03:04:05.123456"))
    assert naive.created_at.tzinfo is not None
    assert naive.created_at == datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def test_optional_fields_absent_or_null() -> None:
    """Absent/null optionals give None; null providers gives an empty tuple."""
    user = default_profile()
    for name in ("free_trial_pending_eur", "name", "credits_expire_at", "providers"):
        user.pop(name, None)
    p = decode_profile(json.dumps({"user": user}).encode())
    assert p.free_trial_pending_eur is None
    assert p.name is None
    assert p.credits_expire_at is None
    assert p.providers == ()
    assert decode_profile(body(providers=None)).providers == ()
    assert decode_profile(body(providers=["google", "github"])).providers == ("google", "github")


def test_unknown_fields_ignored() -> None:
    """Fields the service adds later do not break decoding."""
    p = decode_profile(body(new_field={"nested": [1, 2]}, another="x"))
    assert p.balance_eur == Decimal("10.000000")
    assert not hasattr(p, "new_field")


def test_id_stays_the_wire_string() -> None:
    """The user id is kept as the string the service sent."""
    assert decode_profile(body(id="0190-not-a-uuid")).id == "0190-not-a-uuid"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email_verified", "true"),
        ("email_verified", 1),
        ("credit_limit_cents", "5000"),
        ("credit_limit_cents", 50.0),
        ("credit_limit_cents", True),
        ("email", None),
        ("created_at", "yesterday"),
        ("created_at", 1700000000),
        ("providers", ["google", 3]),
        ("providers", "google"),
        ("held_eur", None),
    ],
)
def test_wrong_types_name_the_field(field: str, value: object) -> None:
    """Every wrong JSON type is a validation error whose path names the field."""
    with pytest.raises(APIResponseValidationError) as info:
        decode_profile(body(**{field: value}))
    assert info.value.path == f"user.{field}"


def test_missing_required_field() -> None:
    """A missing required field is named."""
    user = default_profile()
    del user["held_eur"]
    with pytest.raises(APIResponseValidationError) as info:
        decode_profile(json.dumps({"user": user}).encode())
    assert info.value.path == "user.held_eur"
    assert "missing" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "path"),
    [(b"[]", "$"), (b"{}", "user"), (b'{"user": 3}', "user"), (b'{"user": null}', "user")],
)
def test_wrong_envelope(raw: bytes, path: str) -> None:
    """A body without a user object is a validation error at the envelope."""
    with pytest.raises(APIResponseValidationError) as info:
        decode_profile(raw)
    assert info.value.path == path


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"user": {', b"\xff\xfe", b"[" * 100_000])
def test_not_json(raw: bytes) -> None:
    """Empty, non-JSON, truncated, non-UTF-8 and absurdly nested bodies are validation errors."""
    with pytest.raises(APIResponseValidationError) as info:
        decode_profile(raw)
    assert info.value.path is None
    assert "not valid JSON" in str(info.value)


def test_profile_is_frozen_and_slotted() -> None:
    """Profiles are immutable values."""
    p = decode_profile(body())
    assert not hasattr(p, "__dict__")
    with pytest.raises(AttributeError):
        p.balance_eur = Decimal(0)  # type: ignore[misc]


async def test_profile_over_the_wire_is_exact(emulator: Emulator) -> None:
    """A profile fetched over a real socket keeps the exact wire digits and flags."""
    key = emulator.add_key(
        {
            "balance_eur": "9.955000",
            "held_eur": "0.045000",
            "credit_limit_cents": 12345,
            "free_trial_pending_eur": "1.500000",
            "providers": None,
            "name": None,
        }
    )
    async with AccountClient(key, base_url=emulator.url) as client:
        p = await client.account.profile()
    assert isinstance(p, Profile)
    assert str(p.balance_eur) == "9.955000"
    assert str(p.held_eur) == "0.045000"
    assert str(p.free_trial_pending_eur) == "1.500000"
    assert p.credit_limit_cents == 12345
    assert p.providers == ()
    assert p.created_at.tzinfo is not None
    assert p.id == emulator.profile(key)["id"]


async def test_bad_money_over_the_wire_is_a_validation_error(emulator: Emulator) -> None:
    """A number where money belongs, served for real, raises a validation error with the request id."""
    key = emulator.add_key({"balance_eur": 9.955})
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(APIResponseValidationError) as info:
            await client.account.profile()
    assert info.value.path == "user.balance_eur"
    assert info.value.status == 200
    assert info.value.request_id is not None
    assert info.value.request_id.startswith("req_")
    assert emulator.attempts(key) == 1  # decode errors are never retried


_BOTH_PARSERS = r"""
import json, sys
if sys.argv[1] == "standard":
    sys.modules["orjson"] = None  # as when the fast extra is not installed
from accountapi import APIResponseValidationError
from accountapi._decode import decode_profile
from accountapi._json import HAVE_ORJSON

assert HAVE_ORJSON is (sys.argv[1] == "orjson")
outcomes = []
for body in json.loads(sys.stdin.read()):
    try:
        outcomes.append(repr(decode_profile(body.encode("utf-8", "surrogatepass"))))
    except APIResponseValidationError as exc:
        outcomes.append(f"error: {exc}")
print(json.dumps(outcomes))
"""


def _profile_text(credit_limit: str, extra: str = "") -> str:
    user = json.dumps(default_profile() | {"id": "acct-1", "email": "e@example.test"})
    user = user.replace('"credit_limit_cents": 5000', f'"credit_limit_cents": {credit_limit}')
    return '{"user": ' + user[:-1] + extra + "}}"


def test_a_body_decodes_the_same_with_and_without_orjson() -> None:
    """Integers beyond 64 bits, NaN, 1e400, a lone surrogate, repeated names: each body
    gives the same Profile (or the same error) whichever JSON parser is installed."""
    bodies = [
        _profile_text("5000"),
        _profile_text("18446744073709551616"),  # 2**64: orjson alone makes it a float
        _profile_text("-9223372036854775809"),  # below -2**63
        _profile_text("123456789012345678901234567890"),
        _profile_text("1e400"),  # inf to the standard parser, refused by orjson
        _profile_text("5000", ', "future_field": 18446744073709551616'),
        _profile_text("5000", ', "future_field": NaN'),
        _profile_text("5000", ', "name": "\\ud800"'),  # a lone surrogate, repeated name
        '{"user": {"id": 1}}',
        "not json",
    ]
    runs = {}
    for parser in ("orjson", "standard"):
        done = subprocess.run(
            [sys.executable, "-c", _BOTH_PARSERS, parser],
            input=json.dumps(bodies),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        runs[parser] = json.loads(done.stdout)
    assert runs["orjson"] == runs["standard"]
    assert "credit_limit_cents=18446744073709551616" in runs["orjson"][1]
