"""The ``accountapi`` command line: ``profile``, ``balances``, ``emulator`` and ``demo``.

Built on click and rich, which come with the ``cli`` extra; only `accountapi.__main__`
imports this module, so library users never load either. Keys are shown only as hints
(``dpct_…abcd``), in results, errors and progress alike. Every failure to run is one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import decimal
import errno
import json
import os
import random
import re
import select
import signal
import stat
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from yarl import URL

from ._bulk import DEFAULT_CONCURRENCY, BalanceResult, BalanceSummary
from ._client import AccountClient
from ._config import NOT_GIVEN, Limits
from ._exceptions import (
    AccountAPIError,
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    MalformedAPIKeyError,
)
from ._keys import check_key, resolve_base_url
from ._models import Profile
from ._output import AtomicFile, OutputError, same_file_as, stdin_input
from ._prometheus import PrometheusWriter
from ._proxy import check_proxy_url, env_proxy, proxy_bypassed
from ._resume import ResumeError, read_previous
from ._thresholds import BalanceThresholds, parse_amount
from .testing._serve import DEFAULTS, ServeError, ServeOptions, plant_mix
from .testing._serve import serve as serve_emulator

if TYPE_CHECKING:
    from .testing import Emulator

__all__ = [
    "EXIT_ALERT",
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_OUTPUT_CLOSED",
    "EXIT_TERMINATED",
    "EXIT_UNUSABLE",
    "EXIT_WRITE_FAILED",
    "cli",
    "run",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # some keys failed, none for authentication
EXIT_UNUSABLE: Final = 2  # could not run: bad usage or input, unreachable service
EXIT_AUTH: Final = 3  # some keys failed authentication (401); wins over EXIT_FAILED
# The longest --expiring-within: a century, far past any credit's life and well inside
# the calendar (a window of millions of days overflows Python's dates).
_MAX_EXPIRY_DAYS: Final = 36_500
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
        except click.exceptions.Abort:  # Ctrl-C
            _stderr().print("accountapi: interrupted", markup=False, highlight=False)
            code = EXIT_INTERRUPTED
        except _Terminated:
            _stderr().print("accountapi: terminated", markup=False, highlight=False)
            code = EXIT_TERMINATED
        except _WriteFailed as exc:
            _error(str(exc))
            code = EXIT_WRITE_FAILED
        except OSError as exc:
            # A write to stdout outside a run's rows (a profile, --help, the emulator's
            # banner) on a full disk or past a size limit: one line, not a traceback.
            if exc.errno not in _WRITE_ERRNOS:
                raise
            _silence_stdout()
            _error(f"cannot write stdout: {exc.strerror or exc}")
            code = EXIT_WRITE_FAILED
        except (_OutputClosed, BrokenPipeError):
            # The reader (e.g. `| head`) went away: stop, as other tools do, and say why.
            _silence_stdout()
            _stderr().print(
                "accountapi: stopped early: stdout was closed by its reader",
                markup=False,
                highlight=False,
            )
            code = EXIT_OUTPUT_CLOSED
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "accountapi"
            _error(f"{exc.format_message()} (see '{where} --help')")
            code = EXIT_UNUSABLE
        except click.ClickException as exc:
            _error(exc.format_message())
            code = EXIT_UNUSABLE
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


# -- text and money as printed ---------------------------------------------------------------

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
    if not value.is_finite():  # the decoder refuses these; shown as is, never raised on
        return str(value)
    value = value.normalize(_MONEY_CONTEXT)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -6:
        value = value.quantize(_MICROS, context=_MONEY_CONTEXT)
    return format(value, "f")


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    code: int = cli.main(args=argv, prog_name="accountapi", standalone_mode=False)
    return code


@click.group(
    "accountapi",
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_STATUS_HELP,
)
@click.version_option(package_name="accountapi", message="accountapi %(version)s")
def cli() -> None:
    """Balances and profiles of Depicta API keys, one key or hundreds of thousands.

    Try `accountapi demo` first: it needs no account. Keys are only ever shown as hints
    such as dpct_…abcd.
    """


# -- options shared by the commands that talk to the service -------------------------------

_F = Callable[..., Any]


def _service_options(f: _F) -> _F:
    f = click.option(
        "--allow-insecure-http",
        is_flag=True,
        help="Allow a plain http:// base URL for a host that is not loopback (the key then "
        "crosses the network unencrypted).",
    )(f)
    f = click.option(
        "--no-proxy",
        is_flag=True,
        help="Connect directly, ignoring --proxy's environment variables.",
    )(f)
    f = click.option(
        "--proxy",
        default=None,
        metavar="URL",
        help="Send every request through this http:// proxy (user:password@ allowed). "
        "[default: $ACCOUNTAPI_PROXY, then $HTTPS_PROXY/$https_proxy ($HTTP_PROXY for an "
        "http:// base URL); none for a host in $NO_PROXY]",
    )(f)
    f = click.option(
        "--max-retries",
        type=click.IntRange(min=0),
        default=None,
        help="Retries of 429, 502, 503 and failed connects per key.  [default: 4]",
    )(f)
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        metavar="SECONDS",
        help="Deadline for each key's call, retries included.  [default: 60]",
    )(f)
    return click.option(
        "--base-url",
        default=None,
        metavar="URL",
        help="Service URL.  [default: $ACCOUNTAPI_BASE_URL, $DEPICTA_API_URL, https://api.depicta.ai]",
    )(f)


def _client(
    api_key: str | None,
    base_url: str | None,
    timeout: float | None,
    max_retries: int | None,
    *,
    proxy: str | None = None,
    no_proxy: bool = False,
    allow_insecure_http: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AccountClient:
    try:
        return AccountClient(
            api_key,
            base_url=base_url,
            proxy=_proxy(base_url, proxy, no_proxy=no_proxy),
            allow_insecure_http=allow_insecure_http,
            timeout=NOT_GIVEN if timeout is None else timeout,
            max_retries=NOT_GIVEN if max_retries is None else max_retries,
            limits=Limits(max_connections=concurrency),
        )
    except AccountAPIError as exc:
        _fail(str(exc))


def _proxy(base_url: str | None, given: str | None, *, no_proxy: bool) -> URL | None:
    """The proxy for the service: --proxy, $ACCOUNTAPI_PROXY, then the standard variables.

    The environment's proxies are not used for a host in $NO_PROXY; --proxy always is.
    Raises ConfigurationError (its message never holds the proxy's password).
    """
    if no_proxy:
        if given is not None:
            raise ConfigurationError("--proxy and --no-proxy cannot be used together")
        return None
    if given is not None:
        return check_proxy_url(given, source="--proxy").url
    try:
        target = URL(resolve_base_url(base_url))
    except ValueError:  # a bad base URL: AccountClient says what is wrong with it
        return None
    value = os.environ.get("ACCOUNTAPI_PROXY", "").strip()
    if not value:
        found = env_proxy(target)
        return None if found is None else found.url
    if target.host is not None and proxy_bypassed(target.host):
        return None
    return check_proxy_url(value, source="$ACCOUNTAPI_PROXY").url


def _unreachable(error: AccountAPIError | None) -> bool:
    """A failure to connect at all: the request never reached the service."""
    return isinstance(error, APIConnectionError) and not error.request_sent


# -- profile -------------------------------------------------------------------------------


@cli.command(epilog=EXIT_STATUS_HELP)
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the key from the first key line of this file (else $ACCOUNTAPI_API_KEY, $DEPICTA_API_KEY).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the profile as JSON, money as strings."
)
@_service_options
def profile(
    key_file: Path | None,
    as_json: bool,
    base_url: str | None,
    timeout: float | None,
    max_retries: int | None,
    proxy: str | None,
    no_proxy: bool,
    allow_insecure_http: bool,
) -> int:
    """Show the profile (balance, holds, limits, flags) behind one API key."""
    key = None
    if key_file is not None:
        key = _first_key(key_file)
        if key is None:
            _fail(f"no key in {key_file} (blank lines and # comments are skipped)")
    elif not any(os.environ.get(name) for name in ("ACCOUNTAPI_API_KEY", "DEPICTA_API_KEY")):
        _fail("no API key: set $ACCOUNTAPI_API_KEY (or $DEPICTA_API_KEY), or pass --key-file")
    client = _client(
        key,
        base_url,
        timeout,
        max_retries,
        proxy=proxy,
        no_proxy=no_proxy,
        allow_insecure_http=allow_insecure_http,
        concurrency=1,
    )
    return _run_async(_profile(client, as_json))


async def _profile(client: AccountClient, as_json: bool) -> int:
    async with client:
        try:
            found = await client.account.profile()
        except AccountAPIError as exc:
            hint = f" [key {exc.key_hint}]" if exc.key_hint else ""
            if _unreachable(exc):
                _fail(f"cannot reach {client.base_url}: {exc}")
            _error(f"{type(exc).__name__}: {exc}{hint}")
            return EXIT_AUTH if isinstance(exc, AuthenticationError) else EXIT_FAILED
    if as_json:
        click.echo(json.dumps(profile_json(found), indent=2))
        return EXIT_OK
    fields = profile_json(found)
    width = max(map(len, fields))
    for name, value in fields.items():
        if value is None:
            value = "-"
        elif isinstance(value, list):
            value = ", ".join(map(safe_text, value)) or "-"
        elif name.endswith("_eur"):
            value = f"{value} EUR"
        elif isinstance(value, str):
            value = safe_text(value)
        click.echo(f"{name:<{width}}  {value}")
    return EXIT_OK


def profile_json(p: Profile) -> dict[str, Any]:
    """The profile in the service's wire shape: money (see `money()`) and timestamps as
    exact strings; other strings as the service sent them (JSON escapes them)."""
    return {
        "id": p.id,
        "email": p.email,
        "name": p.name,
        "balance_eur": money(p.balance_eur),
        "held_eur": money(p.held_eur),
        "free_trial_pending_eur": (
            None if p.free_trial_pending_eur is None else money(p.free_trial_pending_eur)
        ),
        "credit_limit_cents": p.credit_limit_cents,
        "created_at": p.created_at.isoformat(),
        "credits_expire_at": None
        if p.credits_expire_at is None
        else p.credits_expire_at.isoformat(),
        "email_verified": p.email_verified,
        "pending_credit_notice": p.pending_credit_notice,
        "prompt_analysis_opt_in": p.prompt_analysis_opt_in,
        "two_factor_enabled": p.two_factor_enabled,
        "providers": list(p.providers),
    }


# -- keys files ----------------------------------------------------------------------------


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
        for number, key in keys:
            if self._answered(number, key):
                continue
            lines[self.taken] = number
            self.taken += 1
            yield key

    def _check_whole(self, f: IO[bytes]) -> None:
        start = _tell(f)
        count = last = seen = 0
        done = self._done
        try:
            lines = _key_lines(self.name, _raw_lines(f), self._on_invalid)
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
            yield from _key_lines(self.name, _raw_lines(f, size), _ignore)

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
    name: str, raws: Iterator[bytes], on_invalid: Callable[[str, int], None] = _not_a_key
) -> Iterator[tuple[int, str]]:
    """``(line number, key)`` for each key line of ``raws``."""
    for number, raw in enumerate(raws, 1):
        key = _key_on_line(name, number, raw, on_invalid)
        if key is not None:
            yield number, key


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


# -- balances ------------------------------------------------------------------------------

_FORMATS: Final = ("table", "csv", "jsonl")
_BALANCES_FORMATS: Final = (*_FORMATS, "prometheus")
_COLUMNS: Final = (
    "line",
    "key_hint",
    "ok",
    "balance_eur",
    "held_eur",
    "error",
    "status",
    "code",
    "message",
    "request_id",
    "attempts",
    "elapsed_s",
    "account_id",
    "credits_expire_at",
    "low",
    "expiring",
)
_Flags = tuple[bool | None, bool | None]
_NOT_JUDGED: Final[_Flags] = (None, None)


def _judge(summary: BalanceSummary | None) -> Callable[[BalanceResult], _Flags]:
    """``(low, expiring)`` of a result under the run's thresholds: None where a rule is
    off or the key failed (a failed key is neither)."""

    def judge(result: BalanceResult) -> _Flags:
        p = result.profile
        if summary is None or p is None or not result.ok:
            return _NOT_JUDGED
        return summary.flags(p.balance_eur, p.credits_expire_at)

    return judge


def result_record(result: BalanceResult, line: int, flags: _Flags = _NOT_JUDGED) -> dict[str, Any]:
    """One result as flat fields (the csv/jsonl columns); money as exact plain strings;
    ``low`` and ``expiring`` as ``flags`` says (None: that threshold was not given).

    Strings from the service (``code``, ``message``, ``request_id``) are its data, as
    sent (the message on one line); each writer makes them safe for its format.
    """
    error = result.error
    p = result.profile
    status = code = request_id = None
    if isinstance(error, APIStatusError):
        status, code, request_id = error.status, error.code, error.request_id
    elif isinstance(error, APIResponseValidationError):
        status, request_id = error.status, error.request_id
    return {
        "line": line,
        "key_hint": result.key_hint,
        "ok": result.ok,
        "balance_eur": None if p is None else money(p.balance_eur),
        "held_eur": None if p is None else money(p.held_eur),
        "error": None if error is None else type(error).__name__,
        "status": status,
        "code": code,
        "message": None if error is None else " ".join(error.message.split()),
        "request_id": request_id,
        "attempts": result.attempts,
        "elapsed_s": round(result.elapsed, 4),
        "account_id": None if p is None else p.id,
        "credits_expire_at": None
        if p is None or p.credits_expire_at is None
        else p.credits_expire_at.isoformat(),
        "low": flags[0],
        "expiring": flags[1],
    }


class _Writer(Protocol):
    def write(self, result: BalanceResult, line: int) -> None: ...

    def finish(self, summary: BalanceSummary, elapsed: float) -> None:
        """The run ended (not interrupted): write what waits for the end (prometheus)."""


class _RowWriter:
    """A writer that writes each row as it comes: nothing is left for the end."""

    def finish(self, summary: BalanceSummary, elapsed: float) -> None:
        pass


def _alert_cell(flags: _Flags) -> str:
    return ",".join(name for name, on in zip(("low", "expiring"), flags, strict=True) if on) or "-"


class _TableWriter(_RowWriter):
    """Fixed-width columns written row by row, so a million rows never sit in memory.

    With thresholds (``judge`` given) an ALERT column says ``low``, ``expiring`` or both."""

    def __init__(
        self, out: IO[str], last_line: int, judge: Callable[[BalanceResult], _Flags] | None = None
    ) -> None:
        self._out = out
        self._judge = judge
        width = max(6 if last_line == 0 else 4, len(str(last_line)))  # 0: not known yet
        alert = "" if judge is None else "{:<12}  "
        self._row = f"{{:>{width}}}  {{:<14}}  {{:<24}}  {{:>14}}  {{:>12}}  {alert}{{:>5}}  {{}}"
        self._started = False

    def write(self, result: BalanceResult, line: int) -> None:
        if not self._started:  # the header waits for the first row: no header on failure
            self._started = True
            alert = () if self._judge is None else ("ALERT",)
            self._line(
                "LINE", "KEY", "RESULT", "BALANCE EUR", "HELD EUR", *alert, "TRIES", "DETAIL"
            )
        p = result.profile
        error = result.error
        alert = () if self._judge is None else (_alert_cell(self._judge(result)),)
        self._line(
            line,
            result.key_hint,
            "ok" if error is None else type(error).__name__,
            "-" if p is None else money(p.balance_eur),
            "-" if p is None else money(p.held_eur),
            *alert,
            result.attempts,
            "" if error is None else safe_text(str(error)),
        )

    def _line(self, *cells: object) -> None:
        self._out.write(self._row.format(*cells).rstrip() + "\n")


class _CsvWriter(_RowWriter):
    """CSV records; text from the service has its control characters escaped (``\\x1b``)."""

    def __init__(
        self,
        out: IO[str],
        judge: Callable[[BalanceResult], _Flags],
        *,
        header_written: bool = False,
    ) -> None:
        self._csv = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
        self._judge = judge
        self._started = header_written

    def write(self, result: BalanceResult, line: int) -> None:
        if not self._started:
            self._started = True
            self._csv.writeheader()
        record = result_record(result, line, self._judge(result))
        for name in ("ok", "low", "expiring"):
            if record[name] is not None:
                record[name] = "true" if record[name] else "false"
        for name in ("code", "message", "request_id"):
            if record[name] is not None:
                record[name] = safe_text(record[name])
        self._csv.writerow(record)


class _JsonlWriter(_RowWriter):
    """JSON lines; ``json.dumps`` escapes every control character (``\\u001b``).

    Everything else non-ASCII is escaped too (a lone surrogate from an undecodable header
    could not be written as UTF-8), except the hint's ellipsis, kept readable.
    """

    def __init__(self, out: IO[str], judge: Callable[[BalanceResult], _Flags]) -> None:
        self._out = out
        self._judge = judge

    def write(self, result: BalanceResult, line: int) -> None:
        record = result_record(result, line, self._judge(result))
        text = json.dumps(record).replace("\\u2026", "\u2026")
        self._out.write(text + "\n")


def _writer(
    fmt: str,
    out: IO[str],
    last_line: int,
    summary: BalanceSummary,
    *,
    header_written: bool = False,
) -> _Writer:
    judge = _judge(summary)
    if fmt == "csv":
        return _CsvWriter(out, judge, header_written=header_written)
    if fmt == "jsonl":
        return _JsonlWriter(out, judge)
    if fmt == "prometheus":
        return PrometheusWriter(out, money)
    return _TableWriter(out, last_line, None if summary.thresholds is None else judge)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = "- keys/s" if speed is None else f"{speed:,.0f} keys/s"
        return Text(text, style="progress.data.speed")


def _progress(enabled: bool | None) -> Progress | None:
    """A live bar on stderr, by default only when stderr is a terminal."""
    stderr = sys.stderr
    if enabled is None:
        enabled = stderr.isatty()
    if not enabled:
        return None
    console = Console(file=stderr, force_terminal=True)
    return Progress(
        TextColumn("checking"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("[red]{task.fields[errors]} errors"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default="table",
    show_default=True,
    help="Results on stdout: an aligned table, CSV, or one JSON object per line.",
)
_concurrency_option = click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Keys checked at once (each key also stays within its own limit of 10).",
)
_balances_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(_BALANCES_FORMATS),
    default="table",
    show_default=True,
    help="Results: an aligned table, CSV, one JSON object per line, or Prometheus text "
    "exposition (written whole when the run ends, one sample per account).",
)


def _parse_below(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


_progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress on stderr.  [default: on when stderr is a terminal]",
)


@cli.command(epilog=EXIT_STATUS_HELP)
@click.argument("keys_file", metavar="KEYS_FILE|-")
@_balances_format_option
@_concurrency_option
@click.option("--ordered", is_flag=True, help="Print results in file order, not as they complete.")
@_progress_option
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Skip lines that are not keys (each reported by line number on stderr, and "
    "counted) instead of stopping the run.",
)
@click.option(
    "--summary-json",
    "summary_json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Also write the summary (counts, exact totals as strings) to PATH as JSON.",
)
@click.option(
    "--resume",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="OUTPUT",
    help="Append results to OUTPUT (jsonl or csv) instead of stdout, first skipping the "
    "lines it already answers: run the same command again after an interruption.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="PATH",
    help="Write the results to PATH instead of stdout, whole: to a temporary file in its "
    "folder, renamed over PATH when the run ends (an interrupted run leaves PATH as it was).",
)
@click.option(
    "--below",
    callback=_parse_below,
    default=None,
    metavar="EUR",
    help="Flag keys whose balance_eur is below EUR, compared exactly (equal is not below): "
    "digits with an optional fraction, e.g. 5 or 5.50.",
)
@click.option(
    "--expiring-within",
    type=click.IntRange(min=0, max=_MAX_EXPIRY_DAYS),
    default=None,
    metavar="DAYS",
    help="Flag keys whose credits expire within DAYS days from now (or have expired); "
    "keys without an expiry date never are.",
)
@_service_options
def balances(
    keys_file: str,
    fmt: str,
    concurrency: int,
    ordered: bool,
    progress: bool | None,
    skip_invalid: bool,
    summary_json: Path | None,
    resume: Path | None,
    output: Path | None,
    below: Decimal | None,
    expiring_within: int | None,
    base_url: str | None,
    timeout: float | None,
    max_retries: int | None,
    proxy: str | None,
    no_proxy: bool,
    allow_insecure_http: bool,
) -> int:
    """Check the balance of every key in KEYS_FILE (or stdin with -), one key per line.

    Blank lines and lines starting with # are skipped. Results go to stdout (or to
    --output, or are appended to the --resume file), progress and a closing summary to
    stderr. With --below and --expiring-within each row says whether the key is low or
    expiring, the summary counts such keys and accounts, and the exit status is 4 when
    any is and no key failed.
    """
    _check_output_options(fmt, resume, output)
    _check_paths(keys_file, resume=resume, output=output, summary_json=summary_json)
    summary = _new_summary(below, expiring_within)
    previous = None
    out = None
    if resume is not None:
        # Opened (and locked) first, so no other run can append between the read below
        # and this run's first row.
        out = _open_resume_output(resume)
        try:
            previous = read_previous(resume, fmt, _COLUMNS, summary)
        except ResumeError as exc:
            _fail(str(exc))
    source = _KeySource.open(
        keys_file,
        skip_invalid=skip_invalid,
        done=None if previous is None else previous.is_done,
        on_done=summary._add_key,
        same_key=None if previous is None else previous.same_key,
    )
    if previous is not None and source.total is not None and previous.last_line > source.last_line:
        source.close()
        _fail(
            f"--resume {resume} answers line {previous.last_line}, but the last key of "
            f"{source.name} is on line {source.last_line}: is it the output of another keys file?"
        )
    sink = None
    target = None
    try:
        # --output first: a refused --output must not have truncated --summary-json.
        target = _open_output(output)
        sink = _open_summary_json(summary_json)
        if target is not None:
            out = target.stream
        client = _client(
            None,
            base_url,
            timeout,
            max_retries,
            proxy=proxy,
            no_proxy=no_proxy,
            allow_insecure_http=allow_insecure_http,
            concurrency=concurrency,
        )
        summary = _run_async(
            _balances(
                client,
                source,
                fmt=fmt,
                concurrency=concurrency,
                ordered=ordered,
                progress=progress,
                summary_json=sink,
                out=out,
                summary=summary,
                header_written=previous is not None and previous.csv_header,
                out_name=_output_name(resume, output),
                summary_json_name=f"--summary-json {summary_json}",
            )
        )
        if not summary.total:  # only a stream gets here empty: a file was checked up front
            _fail(f"no keys in {source.name} (blank lines and # comments are skipped)")
        if target is not None:
            try:
                target.commit()
            except OutputError as exc:  # flushing, syncing or renaming it failed
                raise _WriteFailed(str(exc)) from None
    except OutputError as exc:
        _fail(str(exc))
    finally:
        try:
            source.close()
            if sink is not None:
                with contextlib.suppress(OSError):  # its write already said whether it failed
                    sink.close()
        finally:  # whatever closing raised, the temporary file goes
            if target is not None:
                target.discard()  # a run that did not end: PATH stays as it was
            elif out is not None:
                with contextlib.suppress(OSError):  # a row that failed already said so
                    out.close()
    return exit_status(summary)


def _output_name(resume: Path | None, output: Path | None) -> str:
    """Where the rows go, as an error message names it."""
    if resume is not None:
        return f"--resume {resume}"
    if output is not None:
        return f"--output {output}"
    return "stdout"


def _check_output_options(fmt: str, resume: Path | None, output: Path | None) -> None:
    if resume is None:
        return
    if fmt in ("table", "prometheus"):
        _fail(f"--resume needs --format jsonl or csv: {fmt} output cannot be read back")
    if output is not None:
        _fail(
            "--resume OUTPUT and --output PATH both say where results go: --resume appends "
            "and resumes, --output replaces a file whole; give one"
        )


def _check_paths(
    keys_file: str, *, resume: Path | None, output: Path | None, summary_json: Path | None
) -> None:
    """Refuse (before anything is opened) an output that names the keys file or another
    output, by resolved path and by inode, so no run truncates or appends to its input."""
    outputs = {"--resume": resume, "--output": output, "--summary-json": summary_json}
    keys: Path | int | None = Path(keys_file) if keys_file != "-" else stdin_input()
    inputs: dict[str, Path | int] = {} if keys is None else {"KEYS_FILE": keys}
    try:
        same_file_as({k: v for k, v in outputs.items() if v is not None}, inputs)
    except OutputError as exc:
        _fail(str(exc))


def _new_summary(below: Decimal | None, expiring_within: int | None) -> BalanceSummary:
    """The run's summary; with thresholds, expiry judged against one moment, the start."""
    if below is None and expiring_within is None:
        return BalanceSummary()
    rules = BalanceThresholds(
        below_eur=below,
        expiring_within=None if expiring_within is None else timedelta(days=expiring_within),
    )
    return BalanceSummary(thresholds=rules, now=datetime.now(UTC))


def _open_output(path: Path | None) -> AtomicFile | None:
    if path is None:
        return None
    try:
        return AtomicFile(path)
    except OutputError as exc:
        _fail(str(exc))


def exit_status(summary: BalanceSummary) -> int:
    """3 if any key failed authentication, else 1 if any key failed, else 4 if any key
    is low or expiring, else 0."""
    if summary.auth_failed:
        return EXIT_AUTH
    if summary.failed:
        return EXIT_FAILED
    return EXIT_ALERT if summary.low or summary.expiring else EXIT_OK


async def _balances(
    client: AccountClient,
    source: _KeySource,
    *,
    fmt: str,
    concurrency: int,
    ordered: bool,
    progress: bool | None,
    on_result: Callable[[BalanceResult], None] | None = None,
    summary_json: IO[str] | None = None,
    out: IO[str] | None = None,
    summary: BalanceSummary | None = None,
    header_written: bool = False,
    out_name: str = "stdout",
    summary_json_name: str = "--summary-json",
) -> BalanceSummary:
    """Stream the keys through ``client.balances``, writing each result as it comes.

    ``out`` defaults to stdout; ``summary`` may already count an earlier run's results
    (``--resume``), so the closing summary covers the whole keys file. A row that cannot
    be written (``out_name`` says where) stops the run with `_WriteFailed`, after
    the summary of the rows written.
    """
    if out is None:
        out = sys.stdout
    if summary is None:
        summary = BalanceSummary()
    writer = _writer(fmt, out, source.last_line, summary, header_written=header_written)
    bar = _progress(progress)
    task = TaskID(0)
    if bar is not None:
        task = bar.add_task("balances", total=source.total, errors=0)
        bar.start()
    reached = False  # has any request got an answer from the service?
    json_failure: OSError | None = None
    started = time.perf_counter()
    interrupted = False
    try:
        async with (
            client,
            client.balances(source.keys, concurrency=concurrency, ordered=ordered) as results,
        ):
            async for result in results:
                if result.ok or isinstance(
                    result.error, APIStatusError | APIResponseValidationError
                ):
                    reached = True
                elif not reached and _unreachable(result.error):
                    _fail(f"cannot reach {client.base_url}: {result.error}")
                try:
                    writer.write(result, source.line_of(result.index))
                    out.flush()  # a row is seen when it is ready, also through a pipe
                except BrokenPipeError:
                    raise
                except OSError as exc:  # ENOSPC, EFBIG, EIO: no row can be kept
                    raise _WriteFailed.of(out_name, exc) from None
                summary.add(result)  # only once written: a row the reader missed is not counted
                if on_result is not None:
                    on_result(result)
                if bar is not None:
                    bar.update(task, advance=1, errors=summary.failed)
        try:
            writer.finish(summary, time.perf_counter() - started)
            out.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _WriteFailed.of(out_name, exc) from None
    except asyncio.CancelledError:
        interrupted = True
        raise
    except BrokenPipeError:
        interrupted = True
        _silence_stdout()  # what is left in the buffer goes nowhere, quietly
        raise _OutputClosed from None
    except _WriteFailed:
        interrupted = True
        if out is sys.stdout:
            _silence_stdout()  # else exit's flush of the rest would fail loudly again
        raise
    finally:
        if bar is not None:
            bar.stop()
        try:
            out.flush()
        except BrokenPipeError:  # the last row's reader left: reported by the caller
            _silence_stdout()
        except OSError:  # reported as the row's failure (or the next one's, at close)
            if out is sys.stdout:
                _silence_stdout()
        if reached or summary.total:
            total = source.total if source.total is not None else source.taken
            total += source.resumed
            elapsed = time.perf_counter() - started
            _print_summary(summary, total, elapsed, interrupted, source.skipped, source.resumed)
            if summary_json is not None:
                record = summary_record(summary, total, elapsed, interrupted)
                record["skipped_lines"] = source.skipped
                record["resumed_lines"] = source.resumed
                json_failure = _write_summary_json(summary_json, record)
    if json_failure is not None:
        raise _WriteFailed.of(summary_json_name, json_failure)
    return summary


def _open_resume_output(path: Path) -> IO[str]:
    """The --resume file, for appending (created if missing), locked against a second run
    appending to it at the same time (an advisory lock, released when this process ends,
    even by SIGKILL)."""
    try:
        out = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        _fail(f"cannot write --resume {path}: {exc.strerror or exc}")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        return out
    try:
        fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        out.close()
        _fail(f"--resume {path} is being written by another run (it holds its lock)")
    return out


def _open_summary_json(path: Path | None) -> IO[str] | None:
    """Open ``--summary-json`` before the run: a path that cannot be written fails now."""
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write --summary-json {path}: {exc.strerror or exc}")


def summary_record(
    summary: BalanceSummary, total: int, elapsed: float, interrupted: bool
) -> dict[str, object]:
    """The summary as JSON-ready data; money as exact strings, like every other output."""
    return {
        "checked": summary.total,
        "of": total,
        "interrupted": interrupted,
        "ok": summary.ok,
        "failed": summary.failed,
        "auth_failed": summary.auth_failed,
        "by_error": dict(sorted(summary.by_error.items())),
        "distinct_keys": summary.distinct_keys,
        "accounts": summary.accounts,
        "total_balance_eur": money(summary.total_balance_eur),
        "total_held_eur": money(summary.total_held_eur),
        **_threshold_record(summary),
        "elapsed_s": round(elapsed, 3),
        "exit_status": exit_status(summary),
    }


def _threshold_record(summary: BalanceSummary) -> dict[str, object]:
    """The thresholds of the run and what they found (null/0 when not given)."""
    rules = summary.thresholds or BalanceThresholds()
    within = rules.expiring_within
    return {
        "below_eur": None if rules.below_eur is None else money(rules.below_eur),
        "expiring_within_days": None if within is None else within.days,
        "low": summary.low,
        "low_accounts": summary.low_accounts,
        "expiring": summary.expiring,
        "expiring_accounts": summary.expiring_accounts,
    }


def _write_summary_json(sink: IO[str], record: dict[str, object]) -> OSError | None:
    """Write the summary record; the error when it could not be (the summary on stderr
    stands, and the run exits 74 once it has ended)."""
    try:
        json.dump(record, sink, indent=2)
        sink.write("\n")
        sink.flush()
    except OSError as exc:
        return exc
    return None


def _print_summary(
    summary: BalanceSummary,
    total: int,
    elapsed: float,
    interrupted: bool = False,
    skipped: int = 0,
    resumed: int = 0,
) -> None:
    checked_now = summary.total - resumed
    rate = checked_now / elapsed if elapsed > 0 else 0.0
    head = (
        f"checked {summary.total} of {total} keys"
        if interrupted
        else f"checked {summary.total} keys"
    )
    lines = [
        f"{head} in {elapsed:.1f}s ({rate:,.0f} keys/s): {summary.ok} ok, {summary.failed} failed",
    ]
    if summary.by_error:
        parts = sorted(summary.by_error.items(), key=lambda item: (-item[1], item[0]))
        lines.append("  failed: " + ", ".join(f"{name} {count}" for name, count in parts))
    if skipped:
        lines.append(f"  skipped {skipped} line(s) that are not keys (--skip-invalid)")
    if resumed:
        lines.append(
            f"  resumed: {resumed} line(s) answered by an earlier run, {checked_now} checked now"
        )
    lines.append(
        f"  {summary.total} keys, {summary.distinct_keys} distinct, "
        f"of {summary.accounts} distinct accounts"
    )
    lines += _threshold_lines(summary)
    lines.append(
        f"  total over {summary.accounts} accounts (each counted once): "
        f"balance {money(summary.total_balance_eur)} EUR, held {money(summary.total_held_eur)} EUR"
    )
    _stderr().print("\n".join(lines), markup=False)


def _threshold_lines(summary: BalanceSummary) -> list[str]:
    rules = summary.thresholds
    if rules is None:
        return []
    lines = []
    if rules.below_eur is not None:
        lines.append(
            f"  low (balance below {money(rules.below_eur)} EUR): {summary.low} keys, "
            f"{summary.low_accounts} accounts"
        )
    if rules.expiring_within is not None:
        lines.append(
            f"  expiring (credits expire within {rules.expiring_within.days} days): "
            f"{summary.expiring} keys, {summary.expiring_accounts} accounts"
        )
    return lines


# -- emulator ------------------------------------------------------------------------------


_SERVE: Final = DEFAULTS


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=_SERVE.port,
    show_default=True,
    help="Loopback port to listen on; 0 picks a free one.",
)
@click.option(
    "--keys",
    "n_keys",
    type=click.IntRange(min=0),
    default=_SERVE.keys,
    show_default=True,
    help="How many keys to create.",
)
@click.option(
    "--keys-file",
    default=_SERVE.keys_file,
    show_default=True,
    metavar="PATH",
    help="Where to write the keys, one per line (mode 0600); - for stdout.",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=_SERVE.latency,
    show_default=True,
    metavar="SECONDS",
    help="Service time of every request.",
)
@click.option(
    "--mix",
    is_flag=True,
    help="Plant the demo's mix of failing keys (unknown 401, out of credit 402, "
    "transient 429/502/503 first, zero balances) to rehearse a run.",
)
@click.option(
    "--seed", type=int, default=_SERVE.seed, show_default=True, help="Seed of the planted mix."
)
def emulator(port: int, n_keys: int, keys_file: str, latency: float, mix: bool, seed: int) -> int:
    """Run the account API emulator on 127.0.0.1 until Ctrl-C, for trying the CLI and SDK.

    The same as `python -m accountapi.testing` (one implementation, one set of defaults).
    """
    options = ServeOptions(
        port=port, keys=n_keys, keys_file=keys_file, latency=latency, mix=mix, seed=seed
    )
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(serve_emulator(options))
    except ServeError as exc:
        _fail(str(exc))
    return EXIT_OK


# -- demo ----------------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Exit status:
  0  every result matched what was planted in the emulator
  1  some result did not
  2  could not run
"""
)
@click.option(
    "--keys",
    "n_keys",
    type=click.IntRange(min=10, max=100_000),
    default=300,
    show_default=True,
    help="How many keys to plant in the emulator.",
)
@_format_option
@_concurrency_option
@_progress_option
@click.option("--seed", type=int, default=2026, show_default=True, help="Seed of the planted mix.")
def demo(n_keys: int, fmt: str, concurrency: int, progress: bool | None, seed: int) -> int:
    """Run `balances` against an in-process emulator with planted failures; no account needed.

    The emulator gets keys with money, empty keys, unknown keys (401), keys out of credit
    (402) and keys whose first answers are 429/502/503. The demo prints every result,
    then checks each one against what was planted: exit status 0 when all match.
    """
    return _run_async(_demo(n_keys, fmt, concurrency, progress, seed))


async def _demo(n_keys: int, fmt: str, concurrency: int, progress: bool | None, seed: int) -> int:
    from .testing import Emulator

    async with Emulator(latency=0.02) as emu:
        planted = plant_mix(emu, n_keys, random.Random(seed))  # noqa: S311 - a demo's mix
        source = _KeySource.of("demo", list(planted))
        wrong = 0

        def check(result: BalanceResult) -> None:
            nonlocal wrong
            if not _as_planted(emu, result, planted[result.key]):
                wrong += 1

        client = AccountClient(base_url=emu.url, limits=Limits(max_connections=concurrency))
        await _balances(
            client,
            source,
            fmt=fmt,
            concurrency=concurrency,
            ordered=False,
            progress=progress,
            on_result=check,
        )
    if wrong:
        _stderr().print(f"demo: {wrong} results differ from what was planted", markup=False)
        return EXIT_FAILED
    _stderr().print(
        f"demo: all {n_keys} results match what was planted in the emulator", markup=False
    )
    return EXIT_OK


def _as_planted(emu: Emulator, result: BalanceResult, expected: str) -> bool:
    """Whether a result is what the demo planted: the exact balance, or the planted error."""
    if expected != "ok":
        return type(result.error).__name__ == expected
    truth = emu.profile(result.key)
    p = result.profile
    return (
        p is not None
        and str(p.balance_eur) == truth["balance_eur"]
        and str(p.held_eur) == truth["held_eur"]
    )
