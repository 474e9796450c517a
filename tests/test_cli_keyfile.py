"""The keys file's fast path (whole blocks of bare key lines at once) against the line by
line reading it stands in for: the same keys, line numbers, reports and file position."""

from __future__ import annotations

import io

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from accountapi.cli._keyfile import _bare_keys, _file_key_lines, _key_lines, _raw_lines
from accountapi.cli._process import CLIError

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
