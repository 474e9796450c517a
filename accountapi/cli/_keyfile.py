"""Reading keys files: a regular file checked whole before the first request, anything
else (stdin, a pipe, a FIFO) streamed through a reader thread as it arrives.
"""

from __future__ import annotations

import asyncio
import os
import select
import stat
import sys
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import IO, Final

from accountapi._exceptions import MalformedAPIKeyError
from accountapi._keys import check_key

from ._process import _fail, _stderr

_MAX_LINE: Final = 4096  # bytes; a key has at most 512 characters, so a longer line is not one
_CHUNK: Final = 64 * 1024
_READ_AHEAD: Final = 4  # chunks a pipe's reader thread may read before the keys are taken


class _KeySource:
    """The keys of KEYS_FILE (or stdin), read once, in order, each with its line number.

    A regular file is checked whole before the first request, so a bad line stops the run
    before anything is sent and the progress bar knows the total; it is then streamed from
    the same open file up to the size it had when checked, so lines appended during the
    run are left for the next one. Anything else (stdin, ``/dev/stdin``, ``<(cmd)``, a
    FIFO) can be read only once: it is streamed as it arrives, through a reader thread so
    a slow producer never blocks the event loop, each line checked when read; a bad line
    ends the run once the keys before it are reported.

    Line numbers live only between a key being taken and its result being written
    (`line_of()`), so memory does not grow with the input.
    """

    def __init__(
        self,
        name: str,
        keys: Iterator[str] | AsyncIterator[str] | None = None,
        *,
        skip_invalid: bool = False,
        done: Callable[[int], bool] | None = None,
        on_done: Callable[[str], None] | None = None,
        same_key: Callable[[int, str], bool] | None = None,
    ) -> None:
        self.name = name
        self._same_key = same_key
        # --resume: lines answered by an earlier run are not handed out; each such key
        # is passed to on_done instead (counted among the summary's distinct keys).
        self._done = done
        self._on_done = on_done
        self.resumed = 0  # lines skipped as answered before
        self.skipped = 0  # lines skipped as not a key (--skip-invalid)
        self._on_invalid: Callable[[str, int], None] = self._skip if skip_invalid else _not_a_key
        self.total: int | None = None  # known up front for a regular file only
        self.last_line = 0  # the last key's line number, when known up front
        self.taken = 0  # keys handed out so far; the next key's index
        self._lines: dict[int, int] = {}
        self._file: IO[bytes] | None = None  # open until read to the end or closed
        self.keys: Iterator[str] | AsyncIterator[str] = keys if keys is not None else iter(())

    @classmethod
    def of(cls, name: str, keys: Sequence[str]) -> _KeySource:
        """Keys already in memory, numbered from line 1 (the demo's)."""
        self = cls(name)
        self.total = self.last_line = len(keys)
        self.keys = self._numbered(enumerate(keys, 1))
        return self

    def _skip(self, name: str, number: int) -> None:
        """--skip-invalid: report the line by its number (never its content) and go on."""
        self.skipped += 1
        _stderr().print(f"accountapi: {name} line {number}: not an API key, skipped", markup=False)

    @classmethod
    def open(
        cls,
        source: str,
        *,
        skip_invalid: bool = False,
        done: Callable[[int], bool] | None = None,
        on_done: Callable[[str], None] | None = None,
        same_key: Callable[[int, str], bool] | None = None,
    ) -> _KeySource:
        """Open ``source`` (a path, or ``-`` for stdin); check a regular file whole."""
        name = "stdin" if source == "-" else source
        self = cls(name, skip_invalid=skip_invalid, done=done, on_done=on_done, same_key=same_key)
        if source == "-":
            stdin = sys.stdin.buffer
            try:
                fd = stdin.fileno()
            except (OSError, ValueError):  # not a real file (an embedding, a test runner)
                self.keys = self._numbered(
                    _key_lines(self.name, _raw_lines(stdin), self._on_invalid)
                )
                return self
            f = open(fd, "rb", closefd=False)  # noqa: SIM115 - closed by the key iterator
        else:
            try:
                f = open(source, "rb")  # noqa: SIM115 - closed by the key iterator
            except OSError as exc:
                _fail(f"cannot read keys file {source}: {exc.strerror or exc}")
        try:
            regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        except OSError as exc:
            f.close()
            _fail(f"cannot read keys file {self.name}: {exc.strerror or exc}")
        self._file = f
        if regular:
            self._check_whole(f)
        else:
            self.keys = self._stream(f)
        return self

    def close(self) -> None:
        """Close the input, whether or not the run read it to the end."""
        keys = self.keys
        if isinstance(keys, Generator):
            keys.close()
        f, self._file = self._file, None
        if f is not None:
            f.close()

    def line_of(self, index: int) -> int:
        """The line number of the key taken ``index``-th (forgotten once asked for)."""
        return self._lines.pop(index, 0)

    def _answered(self, number: int, key: str) -> bool:
        """--resume: whether line ``number`` was answered before (its key then counted)."""
        if self._done is None or not self._done(number):
            return False
        self._check_same_key(number, key)
        self.resumed += 1
        if self._on_done is not None:
            self._on_done(key)
        return True

    def _check_same_key(self, number: int, key: str) -> None:
        if self._same_key is not None and not self._same_key(number, key):
            _fail(
                f"{self.name} line {number} holds another key than the --resume file's row "
                "for that line: the keys file changed since that output was written"
            )

    def _numbered(self, keys: Iterator[tuple[int, str]]) -> Iterator[str]:
        lines = self._lines
        resuming = self._done is not None  # else no line was answered before
        for number, key in keys:
            if resuming and self._answered(number, key):
                continue
            lines[self.taken] = number
            self.taken += 1
            yield key

    def _check_whole(self, f: IO[bytes]) -> None:
        start = _tell(f)
        count = last = seen = 0
        done = self._done
        try:
            lines = _file_key_lines(self.name, f, None, self._on_invalid)
            for last, key in lines:
                seen += 1
                if done is None or not done(last):
                    count += 1
                else:
                    self._check_same_key(last, key)
            if not seen:
                _fail(f"no keys in {self.name} (blank lines and # comments are skipped)")
        except BaseException:
            f.close()
            raise
        self.total, self.last_line = count, last
        size = _tell(f) - start
        self.keys = self._numbered(self._reread(f, start, size))

    def _reread(self, f: IO[bytes], start: int, size: int) -> Iterator[tuple[int, str]]:
        with f:
            try:
                f.seek(start)
            except OSError as exc:
                _fail(f"cannot read keys file {self.name}: {exc.strerror or exc}")
            # Lines skipped were reported by the check above: not again.
            yield from _file_key_lines(self.name, f, size, _ignore)

    async def _stream(self, f: IO[bytes]) -> AsyncIterator[str]:
        """Keys from a pipe, FIFO or terminal, as they arrive; a thread does the reading."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | OSError] = asyncio.Queue()
        room = threading.Semaphore(_READ_AHEAD)
        stop = threading.Event()
        fd = f.fileno()

        def post(item: bytes | OSError) -> None:
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, item)
            except RuntimeError:  # the loop has closed: nobody is reading any more
                stop.set()

        def read() -> None:
            # os.read on the descriptor, not the buffered file: a daemon thread blocked in
            # a buffered read could hold its lock when the interpreter shuts down.
            try:
                while not stop.is_set():
                    room.acquire()
                    if stop.is_set():
                        return
                    try:
                        chunk = os.read(fd, _CHUNK)
                    except BlockingIOError:  # a descriptor left non-blocking by someone else
                        select.select([fd], [], [])
                        room.release()
                        continue
                    except OSError as exc:
                        post(exc)
                        return
                    post(chunk)
                    if not chunk:
                        return
            finally:
                f.close()

        # A daemon: a producer that never writes again must not keep the process alive.
        self._file = None  # the reader closes it when done
        threading.Thread(target=read, name="accountapi-keys-reader", daemon=True).start()
        lines = self._lines
        number = 0
        pending = b""
        try:
            while True:
                chunk = await chunks.get()
                room.release()
                if isinstance(chunk, OSError):
                    _fail(f"cannot read keys from {self.name}: {chunk.strerror or chunk}")
                if chunk:
                    *raws, pending = (pending + chunk).split(b"\n")
                    if len(pending) > _MAX_LINE:  # no newline in sight: cannot be a key
                        raws.append(pending)
                        pending = b""
                else:
                    raws = [pending] if pending else []
                for raw in raws:
                    number += 1
                    key = _key_on_line(self.name, number, raw, self._on_invalid)
                    if key is not None and not self._answered(number, key):
                        lines[self.taken] = number
                        self.taken += 1
                        yield key
                if not chunk:
                    return
        finally:
            stop.set()
            room.release()  # wake the reader if it waits for room, so it can end


def _tell(f: IO[bytes]) -> int:
    try:
        return f.tell()
    except OSError:
        return 0


def _raw_lines(f: IO[bytes], size: int | None = None) -> Iterator[bytes]:
    """The lines of ``f`` (at most ``size`` bytes of it), none longer than it takes to
    tell that it is not a key, so a huge line without a newline is never held whole."""
    remaining = -1 if size is None else size
    while remaining:
        raw = f.readline(_MAX_LINE + 1 if remaining < 0 else min(_MAX_LINE + 1, remaining))
        if not raw:
            return
        if remaining > 0:
            remaining -= len(raw)
        yield raw
        if len(raw) > _MAX_LINE and not raw.endswith(b"\n"):
            return  # reported as not a key; the rest of this line is never read


def _not_a_key(name: str, number: int) -> None:
    """The default for a line that is not a key: the run stops (exit 2)."""
    # Name the line, never its content: it may be a real key with a typo.
    _fail(
        f"{name} line {number}: not an API key (whitespace, control or non-ASCII "
        "characters, or over 512 characters); --skip-invalid skips such lines"
    )


def _ignore(name: str, number: int) -> None:
    """For a second pass over lines already reported."""


def _key_lines(
    name: str,
    raws: Iterator[bytes],
    on_invalid: Callable[[str, int], None] = _not_a_key,
    first: int = 1,
) -> Iterator[tuple[int, str]]:
    """``(line number, key)`` for each key line of ``raws``, numbered from ``first``."""
    for number, raw in enumerate(raws, first):
        key = _key_on_line(name, number, raw, on_invalid)
        if key is not None:
            yield number, key


# Every byte a bare key line may hold: visible ASCII (what a key is made of) and the newline.
_BARE: Final = bytes(range(0x21, 0x7F)) + b"\n"


def _bare_keys(block: bytes) -> list[str] | None:
    """The keys of ``block`` (whole lines, the last ending in a newline) when every line
    is a bare key: 1 to 512 visible ASCII characters, not starting with ``#``, nothing
    around it. Exactly what `_key_on_line()` gives for such lines, found a block at a
    time. None when any line is anything else (blank, a comment, spaces, CRLF, a
    byte-order mark, non-ASCII, too long): `_key_on_line()` then reads it.
    """
    if (
        block.translate(None, _BARE)
        or block.startswith((b"\n", b"#"))
        or b"\n\n" in block
        or b"\n#" in block
    ):
        return None
    keys = block.decode("ascii").split("\n")
    keys.pop()  # what follows the last newline: nothing
    if len(max(keys, key=len)) > 512:
        return None
    return keys


def _file_key_lines(
    name: str,
    f: IO[bytes],
    size: int | None = None,
    on_invalid: Callable[[str, int], None] = _not_a_key,
    block: int = _CHUNK,
) -> Iterator[tuple[int, str]]:
    """`_key_lines()` of ``f`` (at most ``size`` bytes of it, from where it is), a block
    of bare key lines at a time while there are such blocks (`_bare_keys()`); from the
    first block that is not, line by line as `_key_lines()` reads it, to the end. The
    same lines, numbers, reports of bad lines and final position in ``f`` as
    ``_key_lines(name, _raw_lines(f, size), on_invalid)``, for a fraction of the work."""
    remaining = -1 if size is None else size
    number = 0
    while remaining:
        start = f.tell()
        chunk = f.read(block if remaining < 0 else min(block, remaining))
        end = chunk.rfind(b"\n") + 1
        keys = _bare_keys(chunk[:end]) if end else None
        if keys is None:
            f.seek(start)  # from here on line by line, as read without this fast path
            rest = _raw_lines(f, None if remaining < 0 else remaining)
            yield from _key_lines(name, rest, on_invalid, number + 1)
            return
        if end < len(chunk):
            f.seek(start + end)  # the partial last line is read with the next block
        if remaining > 0:
            remaining -= end
        yield from enumerate(keys, number + 1)
        number += len(keys)


def _key_on_line(
    name: str, number: int, raw: bytes, on_invalid: Callable[[str, int], None] = _not_a_key
) -> str | None:
    """The key on a line, None for a blank or # comment line; anything else is
    ``on_invalid`` (which stops the run unless told to skip)."""
    # A line too long to be a key is refused below like any other non-key.
    if number == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        _fail(
            f"{name} is UTF-16 (what PowerShell's > writes); save it as UTF-8, e.g. "
            "Get-Content keys.txt | Set-Content -Encoding utf8 keys-utf8.txt"
        )
    text = "\x00" if len(raw) > _MAX_LINE else raw.decode("utf-8", "replace").strip()
    if number == 1:
        text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows editor
    if not text or text.startswith("#"):
        return None
    try:
        check_key(text)
    except MalformedAPIKeyError:
        on_invalid(name, number)
        return None
    return text


def _first_key(path: Path) -> str | None:
    """The first key line of ``path``, read no further than that line."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        _fail(f"cannot read keys file {path}: {exc.strerror or exc}")
    with f:
        return next((key for _, key in _key_lines(str(path), _raw_lines(f))), None)
