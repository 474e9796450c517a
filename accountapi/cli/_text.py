"""Text and money as the command line prints them: one safe line, exact amounts."""

from __future__ import annotations

import decimal
import re
from decimal import Decimal
from typing import Final

# What a terminal could act on or that could disguise a line: C0 and C1 controls (ESC
# starts cursor moves and colour), DEL, zero-width and bidirectional marks, and the lone
# surrogates that stand for undecodable bytes in a header.
_UNSAFE: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """``text`` from the network as one printable line: whitespace runs become one space,
    other control characters (ESC, BEL, bidi marks, undecodable bytes) a visible escape
    such as ``\\x1b``, so a server cannot move the cursor or rewrite earlier rows."""
    return _UNSAFE.sub(_escape, " ".join(text.split()))


_MONEY_CONTEXT: Final = decimal.Context(prec=decimal.MAX_PREC)
_MICROS: Final = Decimal("0.000001")


def money(value: Decimal) -> str:
    """An amount in plain notation with 6 decimals, or more when the value has them.

    Never an exponent (``0.0000001``, not ``1E-7``; ``0.000000``, not ``0E-7``) and never
    rounded: digits beyond the sixth decimal are shown exactly, trailing zeros past the
    sixth dropped.
    """
    text = str(value)
    # The service's own form (9.955000): six digits after the point, so an exponent of
    # exactly -6, which str() always writes in plain notation, as format(value, "f")
    # does. (Scientific notation ends in an exponent, 1.2E+123, never in six digits.)
    if text[-7:-6] == "." and text[-6:].isdigit():
        return text
    if not value.is_finite():  # the decoder refuses these; shown as is, never raised on
        return str(value)
    value = value.normalize(_MONEY_CONTEXT)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -6:
        value = value.quantize(_MICROS, context=_MONEY_CONTEXT)
    return format(value, "f")
