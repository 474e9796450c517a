"""The command line as a process: exit statuses, the click group that turns every error
into one line, SIGTERM and a closed stdout, and the event loop it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click
from rich.console import Console

from ._text import safe_text

if TYPE_CHECKING:
    from accountapi._balance_summary import BalanceSummary

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # some keys failed, none for authentication
EXIT_UNUSABLE: Final = 2  # could not run: bad usage or input, unreachable service
EXIT_AUTH: Final = 3  # some keys failed authentication (401); wins over EXIT_FAILED
EXIT_ALERT: Final = 4  # none failed, but some are low (--below) or expiring (--expiring-within)
EXIT_WRITE_FAILED: Final = 74  # results or summary could not be written (EX_IOERR)
EXIT_INTERRUPTED: Final = 130  # Ctrl-C (SIGINT): 128 + 2, as a shell reports it
EXIT_OUTPUT_CLOSED: Final = 141  # stdout's reader went away (`| head`): 128 + SIGPIPE
EXIT_TERMINATED: Final = 143  # SIGTERM, handled as Ctrl-C is: 128 + 15
_SIGNAL_STATUS: Final[dict[int, int]] = {
    signal.SIGTERM: EXIT_TERMINATED,
    signal.SIGINT: EXIT_INTERRUPTED,
}

EXIT_STATUS_HELP: Final = """\b
Exit status:
  0  every key answered with its profile
  1  some keys failed (402, 5xx, timeouts...), none with 401
  2  could not run: usage error, missing/empty/invalid keys file,
     bad or unreachable base URL
  3  some keys failed authentication (401): takes precedence over 1
  4  no key failed, but some are low (--below) or expiring
     (--expiring-within): 1 and 3 take precedence
  130  interrupted (Ctrl-C); 143  terminated (SIGTERM): the summary
     counts the keys checked before
  141  stdout was closed by its reader (e.g. | head): no key failed
     for that; the run stopped early
  74  results or --summary-json could not be written (disk full, file
     too large, I/O error): the run stopped; --resume picks it up
"""


_T = TypeVar("_T")


class CLIError(click.ClickException):
    """A reason the command cannot run, shown as one line; exit status 2."""

    exit_code = EXIT_UNUSABLE


def _fail(message: str) -> NoReturn:
    raise CLIError(message)


class _Group(click.Group):
    """A group whose every error, usage errors included, is one line on stderr."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        for stream in (sys.stdout, sys.stderr):
            # Belt and braces: a character the terminal's encoding lacks prints as an
            # escape instead of ending the run with UnicodeEncodeError.
            reconfigure = getattr(stream, "reconfigure", None)
            if reconfigure is not None:
                with contextlib.suppress(ValueError, OSError):
                    reconfigure(errors="backslashreplace")
        owns_process = bool(extra.pop("owns_process", False))
        _stopping.clear()
        previous = _stop_on_signals()

        def ended(status: int) -> int:
            if owns_process:  # the process ends with it: later signals exit at once
                _hurry_from_now(status)
            return status

        try:
            value = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = ended(value if isinstance(value, int) else EXIT_OK)
        except click.exceptions.Abort as exc:  # Ctrl-C
            code = ended(ended_with(exc))
            _stderr().print("accountapi: interrupted", markup=False, highlight=False)
        except _Terminated as exc:
            code = ended(ended_with(exc))
            _stderr().print("accountapi: terminated", markup=False, highlight=False)
        except _WriteFailed as exc:
            code = ended(ended_with(exc))
            _error(str(exc))
        except OSError as exc:
            # A write to stdout outside a run's rows (a profile, --help, the emulator's
            # banner) on a full disk or past a size limit: one line, not a traceback.
            if exc.errno not in _WRITE_ERRNOS:
                raise
            code = ended(ended_with(exc))
            _silence_stdout()
            _error(f"cannot write stdout: {exc.strerror or exc}")
        except (_OutputClosed, BrokenPipeError) as exc:
            # The reader (e.g. `| head`) went away: stop, as other tools do, and say why.
            code = ended(ended_with(exc))
            _silence_stdout()
            _stderr().print(
                "accountapi: stopped early: stdout was closed by its reader",
                markup=False,
                highlight=False,
            )
        except click.UsageError as exc:
            code = ended(ended_with(exc))
            where = exc.ctx.command_path if exc.ctx is not None else "accountapi"
            _error(f"{exc.format_message()} (see '{where} --help')")
        except click.ClickException as exc:
            code = ended(ended_with(exc))
            _error(exc.format_message())
        finally:
            if not owns_process:  # called in a process that goes on: its handlers back
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # Past click, whose own EPIPE handling would exit 1 as if keys had failed.
            raise _OutputClosed from None


def ended_with(exc: BaseException) -> int:
    """The exit status of a command that ends with ``exc``: what `_Group.main` exits
    with, and what ``--summary-json`` records for a run stopped by it."""
    if isinstance(exc, click.exceptions.Abort | KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, _Terminated):
        return EXIT_TERMINATED
    if isinstance(exc, _OutputClosed | BrokenPipeError):
        return EXIT_OUTPUT_CLOSED
    if isinstance(exc, _WriteFailed) or (isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS):
        return EXIT_WRITE_FAILED
    if isinstance(exc, click.ClickException):
        return EXIT_UNUSABLE
    return 1  # anything else is a bug: Python prints its traceback and exits 1


class _Terminated(Exception):
    """SIGTERM arrived: the run stops as on Ctrl-C, then exits 143."""


class _OutputClosed(Exception):
    """stdout's reader went away (broken pipe): the run stops, then exits 141."""


# What a write can fail with that no argument could have prevented.
_WRITE_ERRNOS: Final = frozenset(
    {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EACCES, errno.EPERM}
)


class _WriteFailed(Exception):
    """Results or the summary could not be written (a full disk, a file over its size
    limit, an I/O error): the run stops, says so in one line, then exits 74."""

    @classmethod
    def of(cls, what: str, exc: OSError) -> _WriteFailed:
        return cls(f"cannot write {what}: {exc.strerror or exc}")


# The exit status the first SIGTERM or Ctrl-C asked for, once one did: the run then winds
# down (checks cancelled, summary printed, files closed), and a second signal is a hurry.
_stopping: list[int] = []
# Temporary files of outputs not yet renamed into place (`AtomicFile`), for a hurried exit.
TEMPORARY_FILES: set[str] = set()


def _hurry(code: int) -> NoReturn:
    """A second SIGTERM or Ctrl-C while the run winds down from the first: remove the
    temporary files (PATHs stay as they were) and exit at once, without running anything
    a signal could interrupt again (no traceback, no half-finished clean-up)."""
    for path in list(TEMPORARY_FILES):
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.write(2, b"accountapi: stopped at once (a signal while the run was ending)\n")
    os._exit(code)


def settled(code: int) -> None:
    """The run's status is on record (``--summary-json`` says it): from now on a stop
    signal exits at once with it (`_hurry`) instead of changing it."""
    if threading.current_thread() is threading.main_thread() and not _stopping:
        _stopping.append(code)


# Signals that arrived inside `signals_held()`, handled as it ends; and whether one is open.
_held: list[int] = []
_holding: list[bool] = []


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM and Ctrl-C held back until the block ends (then handled): for a step that
    must happen together with `settled()`, such as renaming the summary into place.

    Held by the handlers themselves, not by the thread's signal mask: a signal sent to
    the process can land in any thread that does not block it (aiohttp's resolver
    threads), and Python then runs its handler in the main thread at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _holding.append(True)
    try:
        yield
    finally:
        _holding.pop()
        if _held and not _holding:
            signum = _held[0]
            _held.clear()
            handler = signal.getsignal(signum)
            if callable(handler):
                handler(signum, None)  # ours (it held the signal): now acted on
            else:
                signal.raise_signal(signum)  # the default's turn, as if never held


def _holding_back(signum: int) -> bool:
    """Inside `signals_held()`: keep ``signum`` for its end, and say so."""
    if _holding:
        _held.append(signum)
        return True
    return False


def _stop_asked(code: int) -> None:
    """A stop signal arrived: the first starts the wind-down, the next ends it at once."""
    if _stopping:
        _hurry(_stopping[0])
    _stopping.append(code)


def _raise_terminated(signum: int, frame: object) -> None:
    if _holding_back(signum):
        return
    _stop_asked(EXIT_TERMINATED)
    raise _Terminated


def _raise_interrupted(signum: int, frame: object) -> None:
    if _holding_back(signum):
        return
    _stop_asked(EXIT_INTERRUPTED)
    raise KeyboardInterrupt


def _hurry_on_signal(signum: int, frame: object) -> None:
    """Once the command has ended (its files closed or discarded), any stop signal ends
    the process at once with the status it would have had."""
    if _holding_back(signum):
        return
    _hurry(_stopping[0])  # `_hurry_from_now()` put the command's status there


def _hurry_from_now(code: int) -> None:
    """The command has ended with ``code``: from now on (its one-line message, the
    interpreter's exit) a stop signal exits at once with it, never a traceback."""
    if threading.current_thread() is not threading.main_thread():
        return
    if not _stopping:
        _stopping.append(code)
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signum, _hurry_on_signal)


_OURS_OR_DEFAULT: Final = (
    signal.SIG_DFL,
    signal.default_int_handler,
    _raise_terminated,
    _raise_interrupted,
)


def _stop_on_signals() -> dict[int, Any]:
    """Outside the event loop, SIGTERM raises `_Terminated` and Ctrl-C
    ``KeyboardInterrupt`` (a second one of either exits at once, `_hurry`); returns the
    handlers to restore. Nothing is installed outside the main thread, nor over a
    handler of the caller's own."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, Any] = {}
    for signum, default, handler in (
        (signal.SIGTERM, signal.SIG_DFL, _raise_terminated),
        (signal.SIGINT, signal.default_int_handler, _raise_interrupted),
    ):
        if signal.getsignal(signum) is default:
            previous[signum] = default
            signal.signal(signum, handler)
    return previous


def _run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)``, with SIGTERM handled as asyncio handles Ctrl-C: the main task
    is cancelled (so a run stops taking keys and prints its summary), then `_Terminated`
    (or ``KeyboardInterrupt``) is raised. A second signal, before the run has wound
    down, exits at once (`_hurry`)."""

    async def guarded() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - asyncio.run runs this as a task

        def on_signal(code: int) -> None:
            _stop_asked(code)  # the first is kept in _stopping; a second never returns
            task.cancel()

        handled: dict[int, Any] = {}  # signal -> the handler to put back after the loop
        for signum, code in _SIGNAL_STATUS.items():
            before = signal.getsignal(signum)
            if before not in _OURS_OR_DEFAULT:
                continue  # a handler of the caller's own: left to it, as asyncio does
            try:
                loop.add_signal_handler(signum, on_signal, code)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows, not main thread
                continue
            handled[signum] = before
        try:
            return await main
        finally:
            for signum, before in handled.items():
                loop.remove_signal_handler(signum)
                signal.signal(signum, before)  # ours again: sync code after the loop too

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(guarded())
    except asyncio.CancelledError:
        if not _stopping:  # not cancelled by a stop signal
            raise
        if _stopping[0] == EXIT_TERMINATED:
            raise _Terminated from None
        raise KeyboardInterrupt from None


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the ``cli`` extra installs it where it
    exists), unless ``$ACCOUNTAPI_LOOP`` is ``asyncio``; else asyncio's default loop.

    The command line owns its loop, so it can choose the faster one; the library never
    does (an application's loop is the application's choice)."""
    if os.environ.get("ACCOUNTAPI_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing what is left after a broken pipe is quiet."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _stderr() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def _error(message: str) -> None:
    click.echo(f"accountapi: error: {safe_text(message)}", err=True)


def exit_status(summary: BalanceSummary) -> int:
    """3 if any key failed authentication, else 1 if any key failed, else 4 if any key
    is low or expiring, else 0."""
    if summary.auth_failed:
        return EXIT_AUTH
    if summary.failed:
        return EXIT_FAILED
    return EXIT_ALERT if summary.low or summary.expiring else EXIT_OK
