"""Content-Encoding, with no I/O: what the SDK asks for, and a bounded decoder for the rest.

Every request says ``Accept-Encoding: identity``: a profile is a few hundred bytes, and an
encoded body is the one way a server can make a small answer large in memory (a 1 MB
gzip body inflates to 1 GiB). aiohttp's automatic decompression is off, so
``Limits.max_response_bytes`` is checked against what would be held after decoding: a
server that compresses anyway gets its gzip or deflate body inflated here, a chunk at a
time, never past the cap. Any other coding (``br``, ``zstd``, unknown) is refused, since
the SDK did not ask for it and cannot bound it.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["ACCEPT_ENCODING", "UndecodableBody", "decode_body", "is_identity"]

ACCEPT_ENCODING: Final = "identity"
# gzip or zlib-wrapped deflate, detected from the stream's header.
_AUTO_WBITS: Final = 32 + zlib.MAX_WBITS
_INFLATE: Final = frozenset({"gzip", "x-gzip", "deflate"})


class UndecodableBody(ValueError):
    """The body's Content-Encoding is not one the SDK can decode within its cap."""


def is_identity(encoding: str | None) -> bool:
    """True when a Content-Encoding header value means the body is not encoded."""
    return encoding is None or encoding.strip().lower() in ("", "identity")


def decode_body(body: bytes, encoding: str, cap: int) -> tuple[bytes, bool]:
    """Decode ``body`` sent with Content-Encoding ``encoding``, holding at most ``cap`` bytes.

    Returns the decoded bytes and whether decoding stopped at the cap (the rest is never
    inflated). Raises `UndecodableBody` for a coding other than gzip/deflate, a
    stack of codings, or a corrupt or incomplete stream.
    """
    coding = encoding.strip().lower()
    if coding not in _INFLATE:
        raise UndecodableBody(f"Content-Encoding {coding[:40]!r}, which the client did not ask for")
    try:
        return _inflate(zlib.decompressobj(_AUTO_WBITS), body, cap)
    except zlib.error:
        if coding != "deflate":
            raise UndecodableBody(f"a corrupt {coding} body") from None
    try:  # "deflate" sent as a raw stream without the zlib wrapper, as some servers do
        return _inflate(zlib.decompressobj(-zlib.MAX_WBITS), body, cap)
    except zlib.error:
        raise UndecodableBody("a corrupt deflate body") from None


def _inflate(inflater: zlib._Decompress, body: bytes, cap: int) -> tuple[bytes, bool]:
    pieces: list[bytes] = []
    size = 0
    data = body
    while data:
        # At most one byte past the cap: enough to know the body is too large.
        piece = inflater.decompress(data, cap + 1 - size)
        pieces.append(piece)
        size += len(piece)
        if size > cap:
            return b"".join(pieces)[:cap], True
        data = inflater.unconsumed_tail
        if not piece and data:  # pragma: no cover - zlib made no progress; do not spin
            break
    if not inflater.eof:
        raise UndecodableBody("an incomplete compressed body")
    return b"".join(pieces), False
