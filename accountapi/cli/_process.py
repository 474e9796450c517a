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
from collections.abc import Callable, Coroutine, Sequence
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
        previous = _terminate_on_sigterm()
        try:
            value = super().main(
                args,
                prog_name,
                complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
            code = value if isinstance(value, int) else EXIT_OK
        except click.exceptions.Abort as exc:  # Ctrl-C
            _stderr().print("accountapi: interrupted", markup=False, highlight=False)
            code = ended_with(exc)
        except _Terminated as exc:
            _stderr().print("accountapi: terminated", markup=False, highlight=False)
            code = ended_with(exc)
        except _WriteFailed as exc:
            _error(str(exc))
            code = ended_with(exc)
        except OSError as exc:
            # A write to stdout outside a run's rows (a profile, --help, the emulator's
            # banner) on a full disk or past a size limit: one line, not a traceback.
            if exc.errno not in _WRITE_ERRNOS:
                raise
            _silence_stdout()
            _error(f"cannot write stdout: {exc.strerror or exc}")
            code = ended_with(exc)
        except (_OutputClosed, BrokenPipeError) as exc:
            # The reader (e.g. `| head`) went away: stop, as other tools do, and say why.
            _silence_stdout()
            _stderr().print(
                "accountapi: stopped early: stdout was closed by its reader",
                markup=False,
                highlight=False,
            )
            code = ended_with(exc)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "accountapi"
            _error(f"{exc.format_message()} (see '{where} --help')")
            code = ended_with(exc)
        except click.ClickException as exc:
            _error(exc.format_message())
            code = ended_with(exc)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
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


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated


def _terminate_on_sigterm() -> Any:
    """Before and after the event loop, SIGTERM raises `_Terminated`; returns the
    handler to restore (None when nothing was installed: not the main thread, or a
    caller's own handler is in place)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return previous


def _run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)``, with SIGTERM handled as asyncio handles Ctrl-C: the main task
    is cancelled (so a run stops taking keys and prints its summary), then
    `_Terminated` is raised instead of ``KeyboardInterrupt``."""
    terminated = False

    async def guarded() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - asyncio.run runs this as a task

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        try:
            loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not main thread
            return await main
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and (
                threading.current_thread() is threading.main_thread()
            ):
                signal.signal(signal.SIGTERM, _raise_terminated)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(guarded())
    except asyncio.CancelledError:
        if terminated:
            raise _Terminated from None
        raise


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
