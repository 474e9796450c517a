"""What [`AccountClient.balances()`][accountapi.AccountClient.balances] yields: one [`BalanceResult`][accountapi.BalanceResult] per input key.

A [`BalanceOk`][accountapi.BalanceOk] holds the key's decoded profile, a [`BalanceFailed`][accountapi.BalanceFailed] the error its
check ended with; neither shows the key in its ``repr``.
"""

from __future__ import annotations

from typing import ClassVar, Literal, TypeAlias

import attrs

from ._exceptions import AccountAPIError
from ._keys import key_hint
from ._models import Profile

__all__ = ["BalanceFailed", "BalanceOk", "BalanceResult"]


@attrs.frozen(kw_only=True, repr=False)
class BalanceOk:
    """A key whose profile was fetched and decoded: ``ok`` is True, ``profile`` is set.

    ``key`` is kept so a caller can map the result back, but it never appears in the
    ``repr``/``str``; use ``key_hint`` (``dpct_…abcd``) to show it. ``index`` is the key's
    position in the input; ``attempts`` the HTTP attempts this occurrence made (0 when it
    was shared), so the attempts of all results add up to the requests sent; ``elapsed``
    the seconds from taking the key to the result. ``shared`` is true when this
    occurrence of a duplicated key reused the check of another occurrence instead of
    making its own request. ``error`` is always None, so code written for either kind of
    [`BalanceResult`][accountapi.BalanceResult] reads both.
    """

    ok: ClassVar[Literal[True]] = True
    error: ClassVar[None] = None

    key: str
    """The key as given (never shown in ``repr``/``str``; use ``key_hint``)."""
    index: int
    """The key's position in the input, from 0."""
    profile: Profile
    """The key's profile, decoded."""
    attempts: int = 0
    """HTTP attempts this occurrence made (0 when nothing was sent or it was shared)."""
    elapsed: float = 0.0
    """Seconds from taking the key to this result."""
    shared: bool = False
    """True when this repeat of a key reused another occurrence's check."""

    @property
    def key_hint(self) -> str:
        """The key as a hint (``dpct_…abcd``), safe to log and show."""
        return key_hint(self.key)

    def __repr__(self) -> str:
        return (
            f"BalanceOk(key_hint={self.key_hint!r}, index={self.index!r}, "
            f"profile={self.profile!r}, attempts={self.attempts!r}, "
            f"elapsed={self.elapsed!r}, shared={self.shared!r})"
        )


@attrs.frozen(kw_only=True, repr=False)
class BalanceFailed:
    """A key whose check ended with an error: ``ok`` is False, ``error`` is set.

    The fields mean what they mean on [`BalanceOk`][accountapi.BalanceOk]; ``attempts`` is 0 when the
    check failed before sending anything (a malformed key) or was shared. A shared
    occurrence's ``error`` is a copy of that check's error, whose own ``attempts`` tells
    how many that check took. ``profile`` is always None.
    """

    ok: ClassVar[Literal[False]] = False
    profile: ClassVar[None] = None

    key: str
    """The key as given (never shown in ``repr``/``str``; use ``key_hint``)."""
    index: int
    """The key's position in the input, from 0."""
    error: AccountAPIError
    """The error the key's check ended with."""
    attempts: int = 0
    """HTTP attempts this occurrence made (0 when nothing was sent or it was shared)."""
    elapsed: float = 0.0
    """Seconds from taking the key to this result."""
    shared: bool = False
    """True when this repeat of a key reused another occurrence's check."""

    @property
    def key_hint(self) -> str:
        """The key as a hint (``dpct_…abcd``), safe to log and show."""
        # A malformed input item may not be a str at all; it is never shown.
        return key_hint(self.key) if isinstance(self.key, str) else "…"

    def __repr__(self) -> str:
        return (
            f"BalanceFailed(key_hint={self.key_hint!r}, index={self.index!r}, "
            f"error={self.error!r}, attempts={self.attempts!r}, "
            f"elapsed={self.elapsed!r}, shared={self.shared!r})"
        )


BalanceResult: TypeAlias = BalanceOk | BalanceFailed
"""The outcome for one input key: [`BalanceOk`][accountapi.BalanceOk] or [`BalanceFailed`][accountapi.BalanceFailed].

Both have ``ok``, ``profile``, ``error``, ``key``, ``key_hint``, ``index``, ``attempts``,
``elapsed`` and ``shared``; ``ok`` is ``Literal[True]`` on one and ``Literal[False]`` on
the other. ``isinstance(r, BalanceOk)`` (or ``match r: case BalanceOk(): ...``) narrows
the type for every type checker, so ``r.profile`` is a [`Profile`][accountapi.Profile] there with no
cast; mypy also narrows on ``if r.ok:``, pyright only on ``if r.ok == True``.
``isinstance(r, BalanceResult)`` holds for both kinds.
"""
