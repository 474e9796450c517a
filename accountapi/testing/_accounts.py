"""The emulator's accounts: the profile each key serves, and how little it keeps per key."""

from __future__ import annotations

import itertools
import json
import secrets
import uuid
from collections import deque
from typing import Any

import attrs

from ._faults import Fault

__all__ = [
    "KeyState",
    "default_profile",
    "key_hint",
    "new_key",
    "profile_body",
    "profile_of",
    "user_numbers",
]

user_numbers = itertools.count(1)


def default_profile() -> dict[str, Any]:
    """A fresh wire-format profile with every field of the spec's `User`, unique per call."""
    return profile_of(next(user_numbers), str(uuid.uuid4()))


def profile_of(n: int, account_id: str) -> dict[str, Any]:
    """The default profile of user number ``n`` with account id ``account_id``."""
    return {
        "id": account_id,
        "email": f"user-{n}@example.test",
        "name": f"Test User {n}",
        "balance_eur": "10.000000",
        "held_eur": "0.000000",
        "credit_limit_cents": 5000,
        "created_at": "2025-01-02T03:04:05Z",
        "credits_expire_at": "2027-01-01T00:00:00Z",
        "email_verified": True,
        "free_trial_pending_eur": None,
        "pending_credit_notice": True,
        "prompt_analysis_opt_in": False,
        "providers": ["google"],
        "two_factor_enabled": False,
    }


def key_hint(key: str) -> str:
    """A recognisable but harmless form of a key: first 5 chars, an ellipsis, last 4."""
    if len(key) >= 16:
        return f"{key[:5]}…{key[-4:]}"
    return f"{key[:2]}…"  # too short to show 9 characters without showing most of it


def new_key() -> str:
    """A random key shaped like the service's: `dpct_` and 32 URL-safe characters."""
    return "dpct_" + secrets.token_urlsafe(24)


@attrs.define(slots=True, repr=False)
class KeyState:
    """Everything the emulator holds for one key; never printed, since it holds the key.

    Compact, so that hundreds of thousands of keys fit in little memory (about 0.3 KB a
    key): the profile is kept as the user number, account id and the fields given to
    ``add_key``, and built when served; it becomes a stored dict (``live``) only once a
    test asks for it or a dismissal changes it. The fault queue exists once scripted.
    """

    number: int
    account_id: str
    overrides: dict[str, Any] | None
    sticky: Fault | None
    latency: float | None
    queue: deque[Fault] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    live: dict[str, Any] | None = None

    @property
    def profile(self) -> dict[str, Any]:
        """The live profile dict (made and kept on first use)."""
        if self.live is None:
            self.live = self.wire()
        return self.live

    def wire(self) -> dict[str, Any]:
        """The profile as served now (the live dict itself once there is one)."""
        if self.live is not None:
            return self.live
        built = profile_of(self.number, self.account_id)
        if self.overrides is not None:
            built.update(self.overrides)  # copied once, by add_key
        return built


def profile_body(state: KeyState) -> bytes:
    return json.dumps({"user": state.wire()}).encode()
