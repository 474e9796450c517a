"""The profile model as pydantic v2 and msgspec users would write it, for the decode race.

No ``from __future__ import annotations`` here: both libraries read the annotations at
class creation. Importing this module needs the ``bench`` extra (pydantic, msgspec).
"""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec
import pydantic

__all__ = ["MsgspecEnvelope", "PydanticEnvelope", "PydanticMoneyEnvelope"]

_MONEY = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_STRICT = pydantic.ConfigDict(strict=True, frozen=True)


def _money_string(value: object) -> Decimal:
    """The SDK's money rule: a plain decimal string, nothing else, kept to every digit."""
    if type(value) is not str or _MONEY.fullmatch(value) is None:
        raise ValueError("expected a decimal string like '9.955000'")
    return Decimal(value)


Money = Annotated[Decimal, pydantic.BeforeValidator(_money_string)]


class PydanticUser(pydantic.BaseModel):
    model_config = _STRICT
    id: str
    email: str
    balance_eur: Decimal
    held_eur: Decimal
    credit_limit_cents: int
    created_at: datetime
    email_verified: bool
    pending_credit_notice: bool
    prompt_analysis_opt_in: bool
    two_factor_enabled: bool
    name: str | None = None
    credits_expire_at: datetime | None = None
    free_trial_pending_eur: Decimal | None = None
    providers: tuple[str, ...] | None = None


class PydanticEnvelope(pydantic.BaseModel):
    model_config = _STRICT
    user: PydanticUser


class PydanticMoneyUser(pydantic.BaseModel):
    model_config = _STRICT
    id: str
    email: str
    balance_eur: Money
    held_eur: Money
    credit_limit_cents: int
    created_at: datetime
    email_verified: bool
    pending_credit_notice: bool
    prompt_analysis_opt_in: bool
    two_factor_enabled: bool
    name: str | None = None
    credits_expire_at: datetime | None = None
    free_trial_pending_eur: Money | None = None
    providers: tuple[str, ...] | None = None


class PydanticMoneyEnvelope(pydantic.BaseModel):
    model_config = _STRICT
    user: PydanticMoneyUser


class MsgspecUser(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    balance_eur: Decimal
    held_eur: Decimal
    credit_limit_cents: int
    created_at: datetime
    email_verified: bool
    pending_credit_notice: bool
    prompt_analysis_opt_in: bool
    two_factor_enabled: bool
    name: str | None = None
    credits_expire_at: datetime | None = None
    free_trial_pending_eur: Decimal | None = None
    providers: tuple[str, ...] | None = None


class MsgspecEnvelope(msgspec.Struct, frozen=True):
    user: MsgspecUser
