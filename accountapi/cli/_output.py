"""Output files of ``accountapi balances``: replaced whole, and never one of the inputs.

``--output PATH`` is written under a temporary name in PATH's folder (``.NAME.XXXX.tmp``,
which node_exporter's textfile collector, reading ``*.prom``, ignores) and renamed over
PATH with `os.replace()` when the run ends, so a reader sees the previous file or the
new one, never half of one. A run that stops early (an error, Ctrl-C, SIGTERM) removes
its temporary file and leaves PATH as it was; only SIGKILL can leave one behind.

Before anything is opened, every output path is compared with the inputs and with the
other outputs, by resolved path and by device and inode (so a hard link or a symlink to
the keys file is caught too). Standard output is one of the outputs when the rows go
there and it is a file or a pipe: ``balances keys.txt >> keys.txt`` and
``--summary-json FILE > FILE`` (the summary would replace the rows) are refused too.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from ._process import TEMPORARY_FILES, settled, signals_held

__all__ = [
    "AtomicFile",
    "OutputError",
    "SummaryFile",
    "same_file_as",
    "stdin_input",
    "stdout_output",
]


class OutputError(Exception):
    """An output path that cannot be used; the message is one line for the operator."""


def _identity(path: Path | int) -> tuple[str | None, tuple[int, int] | None]:
    """(resolved path, (device, inode)) of a path, or of an open descriptor (stdin, stdout)."""
    try:
        st = os.fstat(path) if isinstance(path, int) else os.stat(path)
    except (OSError, ValueError):
        st = None
    node = None if st is None else (st.st_dev, st.st_ino)
    if isinstance(path, int):
        # A descriptor counts when it is a regular file (overwritten or appended to
        # through its name) or a FIFO (read by a program that would get mixed data). Not
        # a terminal, nor a socket: one socket is often both stdin and stdout.
        counts = st is not None and (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode))
        return None, node if counts else None
    return os.path.realpath(path), node


def same_file_as(outputs: Mapping[str, Path | int], inputs: Mapping[str, Path | int]) -> None:
    """Raise `OutputError` when an output names an input or another output.

    ``outputs`` and ``inputs`` map an option's name (``--output``) to its path, or to a
    descriptor: stdin for ``-``, stdout when the rows go there."""
    named = [(name, path, _identity(path)) for name, path in inputs.items()]
    for name, path in outputs.items():
        mine = _identity(path)
        for other, their_path, theirs in named:
            if (mine[0] is not None and mine[0] == theirs[0]) or (
                mine[1] is not None and mine[1] == theirs[1]
            ):
                shown = path if not isinstance(path, int) else their_path
                where = "" if isinstance(shown, int) else f" ({shown})"
                raise OutputError(f"{name} and {other} name the same file{where}")
        named.append((name, path, mine))


def _mode(target: str) -> int:
    """The permissions a plain ``open(PATH, "w")`` would give: the file's own when it
    exists, else 0666 less the umask (mkstemp's 0600 would hide it from a collector)."""
    with contextlib.suppress(OSError):
        return stat.S_IMODE(os.stat(target).st_mode)
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


class AtomicFile:
    """A text file that replaces ``path`` only when `commit()` is called.

    A symlink at ``path`` is followed: the file it points to is replaced, the link kept.
    """

    def __init__(self, path: Path, option: str = "--output") -> None:
        self.path = path
        target = os.path.realpath(path)
        try:
            existing: os.stat_result | None = os.stat(target)
        except OSError:
            existing = None
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise OutputError(f"cannot write {option} {path}: it is a directory")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            # A device, FIFO or socket would be replaced by a regular file (as root, a
            # cron job's --output /dev/null would destroy /dev/null): refused.
            raise OutputError(
                f"cannot write {option} {path}: not a regular file (a device, FIFO or "
                "socket is never replaced; leave out the option to write to stdout)"
            )
        self._target = target
        folder, name = os.path.split(target)
        try:
            fd, self._temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        except OSError as exc:
            raise OutputError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
        TEMPORARY_FILES.add(self._temp)  # removed by a hurried exit too (a second signal)
        self._option = option
        self._done = False
        # Windows has no fchmod: mkstemp's 0600 is then kept.
        with contextlib.suppress(OSError, AttributeError):
            os.fchmod(fd, _mode(target))
        if existing is not None:  # keep the replaced file's owner, as open(PATH, "w") would
            with contextlib.suppress(OSError, AttributeError):
                os.fchown(fd, existing.st_uid, existing.st_gid)
        # Text the decoder let through but UTF-8 cannot hold (a lone surrogate in an
        # account id) is written escaped, as on stdout, never a traceback.
        self.stream: IO[str] = open(  # noqa: SIM115 - closed by commit or discard
            fd, "w", encoding="utf-8", errors="backslashreplace", newline=""
        )

    def commit(self, then: Callable[[], None] | None = None) -> None:
        """Flush, sync and rename over ``path``: from now on readers see the new file.
        ``then`` runs with the rename, no stop signal between them."""
        try:
            self.stream.flush()
            os.fsync(self.stream.fileno())
            self.stream.close()
            with signals_held():
                os.replace(self._temp, self._target)
                TEMPORARY_FILES.discard(self._temp)
                self._done = True
                if then is not None:
                    then()
        except OSError as exc:
            self.discard()
            raise OutputError(
                f"cannot write {self._option} {self.path}: {exc.strerror or exc}"
            ) from None

    def discard(self) -> None:
        """Close and remove the temporary file (nothing once committed); ``path`` untouched."""
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError, ValueError):
            self.stream.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._temp)
        TEMPORARY_FILES.discard(self._temp)


def _descriptor_named(path: Path) -> int | None:
    """The descriptor ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` or ``/proc/self/fd/N``
    names (None for any other path): resolved, it is the file behind the descriptor."""
    text = str(path)
    if text in ("/dev/stdout", "/dev/stderr"):
        return 1 if text == "/dev/stdout" else 2
    for folder in ("/dev/fd/", "/proc/self/fd/"):
        number = text.removeprefix(folder)
        if number != text and number.isdigit():
            return int(number)
    return None


class SummaryFile:
    """``--summary-json PATH``, opened before the run and written when it ends.

    A regular file (or a new one) is replaced whole, as ``--output`` is: until the run
    ends a reader finds the previous summary, never an empty or half-written one.
    ``/dev/stdout`` (``/dev/stderr``, ``/dev/fd/N``) is written through that descriptor,
    whatever file it is; anything else (a FIFO another program reads) is opened now.
    Either is written once at the end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._atomic: AtomicFile | None = None
        # Written through the process's own descriptor (appended with `>>`, at the
        # shell's offset with `>`), never by replacing or truncating the file it is.
        target: Path | int | None = _descriptor_named(path)
        if target is None:
            try:
                st: os.stat_result | None = os.stat(path)
            except OSError:
                st = None
            if st is None or stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
                self._atomic = AtomicFile(path, "--summary-json")
                self.stream: IO[str] = self._atomic.stream
                return
            target = path
        try:
            opened = os.dup(target) if isinstance(target, int) else target
            self.stream = open(opened, "w", encoding="utf-8")  # noqa: SIM115 - closed by commit or discard
        except OSError as exc:
            raise OutputError(
                f"cannot write --summary-json {path}: {exc.strerror or exc}"
            ) from None

    def commit(self, status: int) -> None:
        """Make what was written visible, with the status it records `settled()` at once
        (a stop signal from then on exits with it); `OutputError` when that failed."""
        if self._atomic is not None:
            self._atomic.commit(lambda: settled(status))
            return
        try:
            with signals_held():
                self.stream.close()
                settled(status)
        except OSError as exc:
            raise OutputError(
                f"cannot write --summary-json {self.path}: {exc.strerror or exc}"
            ) from None

    def discard(self) -> None:
        """Leave ``path`` as it was (for a regular file; a stream gets nothing more)."""
        if self._atomic is not None:
            self._atomic.discard()
            return
        with contextlib.suppress(OSError):
            self.stream.close()


def _descriptor(stream: IO[str]) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # replaced by a test runner, or closed
        return None


def stdin_input() -> int | None:
    """stdin's descriptor, to compare with the outputs when the keys come from ``-``."""
    return _descriptor(sys.stdin)


def stdout_output() -> int | None:
    """stdout's descriptor, to compare with the inputs and the other outputs when the
    rows go there."""
    return _descriptor(sys.stdout)
