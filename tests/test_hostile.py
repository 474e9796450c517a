"""Hostile input, property-tested: whatever the service sends, the SDK returns an exact
Profile or raises APIResponseValidationError, and nothing else."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accountapi import AccountClient, APIResponseValidationError, Profile
from accountapi._decode import decode_profile
from accountapi.testing import Emulator, Fault, default_profile

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = list(default_profile())


def profile_body(**overrides: Any) -> bytes:
    user = default_profile()
    user.update(overrides)
    return json.dumps({"user": user}).encode()


def decode_or_error(body: bytes) -> Profile | APIResponseValidationError:
    try:
        return decode_profile(body)
    except APIResponseValidationError as exc:
        return exc


def test_big_integers_in_new_fields_do_not_break_decoding() -> None:
    """An integer beyond 64 bits in an unknown field is ignored like any other new field."""
    assert decode_profile(profile_body(new_counter=2**80)).email


@given(st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,18})?", fullmatch=True))
def test_any_decimal_string_round_trips_exactly(wire: str) -> None:
    """Every plain decimal string the service could send becomes exactly that Decimal."""
    profile = decode_profile(
        profile_body(balance_eur=wire, held_eur=wire, free_trial_pending_eur=wire)
    )
    for value in (profile.balance_eur, profile.held_eur, profile.free_trial_pending_eur):
        assert value == Decimal(wire)
        assert str(value) == str(Decimal(wire))


@given(st.decimals(allow_nan=False, allow_infinity=False, places=6))
def test_six_place_amounts_keep_their_digits(amount: Decimal) -> None:
    """Amounts in the service's 6-decimal format keep every digit, trailing zeros included."""
    wire = f"{amount:f}"
    assert str(decode_profile(profile_body(balance_eur=wire)).balance_eur) == wire


@given(JSON_VALUES)
def test_any_json_value_as_body_is_a_validation_error(value: Any) -> None:
    """An arbitrary JSON document as a 200 body gives APIResponseValidationError, never another error."""
    with pytest.raises(APIResponseValidationError):
        decode_profile(json.dumps(value).encode())


@given(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=len(FIELDS)))
def test_any_field_values_decode_or_fail_cleanly(overrides: dict[str, Any]) -> None:
    """Random values in the user object give a Profile or a validation error naming a user field."""
    outcome = decode_or_error(profile_body(**overrides))
    if isinstance(outcome, APIResponseValidationError):
        assert outcome.path is not None
        assert outcome.path.startswith("user")
    else:
        assert isinstance(outcome, Profile)


@given(st.integers(min_value=0, max_value=len(profile_body()) - 1))
def test_truncated_json_is_a_validation_error(cut: int) -> None:
    """A profile body cut anywhere is a validation error, never a partial profile."""
    with pytest.raises(APIResponseValidationError):
        decode_profile(profile_body()[:cut])


@given(st.binary(max_size=300))
def test_random_bytes_are_a_validation_error(data: bytes) -> None:
    """Random bytes as a 200 body give APIResponseValidationError."""
    with pytest.raises(APIResponseValidationError):
        decode_profile(data)


@settings(max_examples=25)
@given(st.text(max_size=40))
def test_money_fields_accept_only_decimal_strings(wire: str) -> None:
    """Any other text in a money field names user.balance_eur; a valid one decodes exactly."""
    outcome = decode_or_error(profile_body(balance_eur=wire))
    if isinstance(outcome, APIResponseValidationError):
        assert outcome.path == "user.balance_eur"
    else:
        assert outcome.balance_eur == Decimal(wire)


HOSTILE_BODIES = [
    b"",
    b"null",
    b"[]",
    b'"user"',
    b'{"user": []}',
    b'{"user": {"balance_eur": 1e400}}',
    b"\x00\xff" * 50,
    b'{"user": ' * 5000,
    json.dumps({"user": {**default_profile(), "balance_eur": "NaN"}}).encode(),
    json.dumps({"user": {**default_profile(), "held_eur": 0.1}}).encode(),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
async def test_hostile_bodies_over_the_wire(emulator: Emulator, key: str, body: bytes) -> None:
    """Served for real, each hostile 200 body raises APIResponseValidationError after one attempt."""
    emulator.script(key, [Fault.body(body)])
    async with AccountClient(key, base_url=emulator.url) as client:
        with pytest.raises(APIResponseValidationError):
            await client.account.profile()
    assert emulator.attempts(key) == 1
