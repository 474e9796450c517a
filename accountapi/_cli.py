"""The ``accountapi`` command line: ``profile``, ``balances``, ``emulator`` and ``demo``.

Built on click and rich, which come with the ``cli`` extra; only :mod:`accountapi.__main__`
imports this module, so library users never load either. Keys are shown only as hints
(``dpct_…abcd``), in results, errors and progress alike. Every failure to run is one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import decimal
import json
import os
import random
import re
import signal
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn, Protocol

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

from ._bulk import BalanceResult, BalanceSummary
from ._client import AccountClient
from ._config import NOT_GIVEN, Limits
from ._exceptions import (
    AccountAPIError,
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    AuthenticationError,
    MalformedAPIKeyError,
)
from ._keys import check_key
from ._models import Profile

if TYPE_CHECKING:
    from .testing import Emulator

__all__ = ["EXIT_AUTH", "EXIT_FAILED", "EXIT_OK", "EXIT_UNUSABLE", "cli", "run"]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # some keys failed, none for authentication
EXIT_UNUSABLE: Final = 2  # could not run: bad usage or input, unreachable service
EXIT_AUTH: Final = 3  # some keys failed authentication (401); wins over EXIT_FAILED
EXIT_INTERRUPTED: Final = 130

EXIT_STATUS_HELP: Final = """\b
Exit status:
  0  every key answered with its profile
  1  some keys failed (402, 5xx, timeouts...), none with 401
  2  could not run: usage error, missing/empty/invalid keys file,
     bad or unreachable base URL
  3  some keys failed authentication (401): takes precedence over 1
"""

DEFAULT_CONCURRENCY: Final = 100


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
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "accountapi"
            _error(f"{exc.format_message()} (see '{where} --help')")
            code = EXIT_UNUSABLE
        except click.ClickException as exc:
            _error(exc.format_message())
            code = EXIT_UNUSABLE
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away: stop quietly, as other tools do.
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = EXIT_FAILED
        if standalone_mode:
            sys.exit(code)
        return code


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
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AccountClient:
    try:
        return AccountClient(
            api_key,
            base_url=base_url,
            timeout=NOT_GIVEN if timeout is None else timeout,
            max_retries=NOT_GIVEN if max_retries is None else max_retries,
            limits=Limits(max_connections=concurrency),
        )
    except AccountAPIError as exc:
        _fail(str(exc))


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
) -> int:
    """Show the profile (balance, holds, limits, flags) behind one API key."""
    key = None
    if key_file is not None:
        key = next(iter(_KeyFile.open(str(key_file)).keys()), None)
        if key is None:
            _fail(f"no key in {key_file} (blank lines and # comments are skipped)")
    elif not any(os.environ.get(name) for name in ("ACCOUNTAPI_API_KEY", "DEPICTA_API_KEY")):
        _fail("no API key: set $ACCOUNTAPI_API_KEY (or $DEPICTA_API_KEY), or pass --key-file")
    client = _client(key, base_url, timeout, max_retries, concurrency=1)
    return asyncio.run(_profile(client, as_json))


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
    """The profile in the service's wire shape: money (see :func:`money`) and timestamps as
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


class _KeyFile:
    """A keys file checked up front: one key per line, blank lines and # comments skipped.

    A file is read twice (checked and counted, then streamed) so a million keys are never
    held in memory; stdin can be read only once, so its keys are kept.
    """

    def __init__(self, name: str, path: str | None, kept: list[str] | None) -> None:
        self.name = name
        self._path = path
        self._kept = kept
        self.lines = array("L")  # the file line number of each key, by key index

    @classmethod
    def open(cls, source: str) -> _KeyFile:
        """Check every line of ``source`` (a path, or ``-`` for stdin) and count the keys."""
        if source == "-":
            data = sys.stdin.buffer.read()
            kept: list[str] = []
            self = cls("stdin", None, kept)
            for number, key in _scan(self.name, data.splitlines()):
                kept.append(key)
                self.lines.append(number)
            return self
        self = cls(source, source, None)
        with self._read() as f:
            self.lines.extend(number for number, _ in _scan(source, f))
        return self

    def __len__(self) -> int:
        return len(self.lines)

    @contextlib.contextmanager
    def _read(self) -> Iterator[IO[bytes]]:
        assert self._path is not None  # noqa: S101 - only files are re-read
        try:
            with open(self._path, "rb") as f:
                yield f
        except OSError as exc:
            _fail(f"cannot read keys file {self._path}: {exc.strerror or exc}")

    def keys(self) -> Iterator[str]:
        """The keys, in file order, read lazily from a file."""
        if self._kept is not None:
            yield from self._kept
            return
        with self._read() as f:
            for _, key in _scan(self.name, f):
                yield key


def _scan(
    name: str, lines: Iterator[bytes] | Sequence[bytes] | IO[bytes]
) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, key)`` for each key line; a line that cannot be a key is an error."""
    for number, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", "replace").strip()
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows editor
        if not text or text.startswith("#"):
            continue
        try:
            check_key(text)
        except MalformedAPIKeyError:
            # Name the line, never its content: it may be a real key with a typo.
            _fail(
                f"{name} line {number}: not an API key (whitespace, control or non-ASCII "
                "characters, or over 512 characters)"
            )
        yield number, text


# -- balances ------------------------------------------------------------------------------

_FORMATS: Final = ("table", "csv", "jsonl")
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
)


def result_record(result: BalanceResult, line: int) -> dict[str, Any]:
    """One result as flat fields (the csv/jsonl columns); money as exact plain strings.

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
    }


class _Writer(Protocol):
    def write(self, result: BalanceResult, line: int) -> None: ...


class _TableWriter:
    """Fixed-width columns written row by row, so a million rows never sit in memory."""

    def __init__(self, out: IO[str], last_line: int) -> None:
        self._out = out
        width = max(4, len(str(last_line)))
        self._row = f"{{:>{width}}}  {{:<14}}  {{:<24}}  {{:>14}}  {{:>12}}  {{:>5}}  {{}}"
        self._started = False

    def write(self, result: BalanceResult, line: int) -> None:
        if not self._started:  # the header waits for the first row: no header on failure
            self._started = True
            self._line("LINE", "KEY", "RESULT", "BALANCE EUR", "HELD EUR", "TRIES", "DETAIL")
        p = result.profile
        error = result.error
        self._line(
            line,
            result.key_hint,
            "ok" if error is None else type(error).__name__,
            "-" if p is None else money(p.balance_eur),
            "-" if p is None else money(p.held_eur),
            result.attempts,
            "" if error is None else safe_text(str(error)),
        )

    def _line(self, *cells: object) -> None:
        self._out.write(self._row.format(*cells).rstrip() + "\n")


class _CsvWriter:
    """CSV records; text from the service has its control characters escaped (``\\x1b``)."""

    def __init__(self, out: IO[str]) -> None:
        self._csv = csv.DictWriter(out, fieldnames=_COLUMNS, lineterminator="\n")
        self._started = False

    def write(self, result: BalanceResult, line: int) -> None:
        if not self._started:
            self._started = True
            self._csv.writeheader()
        record = result_record(result, line)
        record["ok"] = "true" if record["ok"] else "false"
        for name in ("code", "message", "request_id"):
            if record[name] is not None:
                record[name] = safe_text(record[name])
        self._csv.writerow(record)


class _JsonlWriter:
    """JSON lines; ``json.dumps`` escapes every control character (``\\u001b``)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, result: BalanceResult, line: int) -> None:
        self._out.write(json.dumps(result_record(result, line)) + "\n")


def _writer(fmt: str, out: IO[str], last_line: int) -> _Writer:
    if fmt == "csv":
        return _CsvWriter(out)
    if fmt == "jsonl":
        return _JsonlWriter(out)
    return _TableWriter(out, last_line)


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
_progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress on stderr.  [default: on when stderr is a terminal]",
)


@cli.command(epilog=EXIT_STATUS_HELP)
@click.argument("keys_file", metavar="KEYS_FILE|-")
@_format_option
@_concurrency_option
@click.option("--ordered", is_flag=True, help="Print results in file order, not as they complete.")
@_progress_option
@_service_options
def balances(
    keys_file: str,
    fmt: str,
    concurrency: int,
    ordered: bool,
    progress: bool | None,
    base_url: str | None,
    timeout: float | None,
    max_retries: int | None,
) -> int:
    """Check the balance of every key in KEYS_FILE (or stdin with -), one key per line.

    Blank lines and lines starting with # are skipped. Results go to stdout, progress and
    a closing summary to stderr.
    """
    source = _KeyFile.open(keys_file)
    if not len(source):
        _fail(f"no keys in {source.name} (blank lines and # comments are skipped)")
    client = _client(None, base_url, timeout, max_retries, concurrency=concurrency)
    summary = asyncio.run(
        _balances(
            client, source, fmt=fmt, concurrency=concurrency, ordered=ordered, progress=progress
        )
    )
    return exit_status(summary)


def exit_status(summary: BalanceSummary) -> int:
    """3 if any key failed authentication, else 1 if any key failed, else 0."""
    if summary.auth_failed:
        return EXIT_AUTH
    return EXIT_FAILED if summary.failed else EXIT_OK


async def _balances(
    client: AccountClient,
    source: _KeyFile,
    *,
    fmt: str,
    concurrency: int,
    ordered: bool,
    progress: bool | None,
    on_result: Callable[[BalanceResult], None] | None = None,
) -> BalanceSummary:
    """Stream the keys through ``client.balances``, writing each result as it comes."""
    total = len(source)
    lines = source.lines
    out = sys.stdout
    writer = _writer(fmt, out, lines[-1])
    summary = BalanceSummary()
    bar = _progress(progress)
    task = TaskID(0)
    if bar is not None:
        task = bar.add_task("balances", total=total, errors=0)
        bar.start()
    reached = False  # has any request got an answer from the service?
    started = time.perf_counter()
    interrupted = False
    try:
        async with (
            client,
            client.balances(source.keys(), concurrency=concurrency, ordered=ordered) as results,
        ):
            async for result in results:
                if result.ok or isinstance(
                    result.error, APIStatusError | APIResponseValidationError
                ):
                    reached = True
                elif not reached and _unreachable(result.error):
                    _fail(f"cannot reach {client.base_url}: {result.error}")
                writer.write(result, lines[result.index])
                summary.add(result)
                if on_result is not None:
                    on_result(result)
                if bar is not None:
                    bar.update(task, advance=1, errors=summary.failed)
    except asyncio.CancelledError:
        interrupted = True
        raise
    finally:
        if bar is not None:
            bar.stop()
        out.flush()
        if reached or summary.total:
            _print_summary(summary, total, time.perf_counter() - started, interrupted)
    return summary


def _print_summary(
    summary: BalanceSummary, total: int, elapsed: float, interrupted: bool = False
) -> None:
    rate = summary.total / elapsed if elapsed > 0 else 0.0
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
    lines.append(
        f"  {summary.total} keys, {summary.distinct_keys} distinct, "
        f"of {summary.accounts} distinct accounts"
    )
    lines.append(
        f"  total over {summary.accounts} accounts (each counted once): "
        f"balance {money(summary.total_balance_eur)} EUR, held {money(summary.total_held_eur)} EUR"
    )
    _stderr().print("\n".join(lines), markup=False)


# -- emulator ------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Loopback port to listen on; 0 picks a free one.",
)
@click.option(
    "--keys",
    "n_keys",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="How many keys to create.",
)
@click.option(
    "--keys-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("emulator-keys.txt"),
    show_default=True,
    help="Where to write the keys, one per line (mode 0600).",
)
@click.option(
    "--latency",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="Service time of every request.",
)
def emulator(port: int, n_keys: int, keys_file: Path, latency: float) -> int:
    """Run the account API emulator on 127.0.0.1 until Ctrl-C, for trying the CLI and SDK."""
    try:
        asyncio.run(_serve(port, n_keys, keys_file, latency))
    except OSError as exc:
        _fail(f"cannot start the emulator: {exc.strerror or exc}")
    return EXIT_OK


async def _serve(port: int, n_keys: int, keys_file: Path, latency: float) -> None:
    from .testing import Emulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
            loop.add_signal_handler(signum, stop.set)
    async with Emulator(port=port, latency=latency) as emu:
        keys = [emu.add_key() for _ in range(n_keys)]
        write_keys_file(keys_file, keys)
        _stderr().print(
            f"accountapi emulator listening on {emu.url} with {n_keys} keys in {keys_file}\n"
            f"  try: ACCOUNTAPI_BASE_URL={emu.url} accountapi balances {keys_file}\n"
            "  Ctrl-C stops it",
            markup=False,
        )
        await stop.wait()
    _stderr().print("accountapi emulator stopped", markup=False)


def write_keys_file(path: Path, keys: Sequence[str]) -> None:
    """Write keys readable by the owner only, even when the file already existed."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        _fail(f"cannot write keys file {path}: {exc.strerror or exc}")
    with os.fdopen(fd, "w", encoding="ascii") as f:
        if hasattr(os, "fchmod"):
            os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        f.writelines(f"{key}\n" for key in keys)


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
    return asyncio.run(_demo(n_keys, fmt, concurrency, progress, seed))


async def _demo(n_keys: int, fmt: str, concurrency: int, progress: bool | None, seed: int) -> int:
    from .testing import Emulator

    async with Emulator(latency=0.02) as emu:
        planted = _plant(emu, n_keys, random.Random(seed))  # noqa: S311 - a demo's mix
        source = _KeyFile("demo", None, list(planted))
        source.lines.extend(range(1, len(planted) + 1))
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


_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"


def _plant(emu: Emulator, n: int, rng: random.Random) -> dict[str, str]:
    """Register the demo's keys; map each key to the outcome it must come back with."""
    from .testing import Fault

    transient = [
        [Fault.rate_limited(0.2)],
        [Fault.status(502)],
        [Fault.html(503)],
        [Fault.empty(503), Fault.html(502)],
    ]
    planted: dict[str, str] = {}
    for i in range(n):
        roll = rng.random()
        if roll < 0.10:  # never registered: 401
            planted["dpct_" + "".join(rng.choices(_ALPHABET, k=32))] = "AuthenticationError"
        elif roll < 0.17:  # out of credit, on every request
            planted[emu.add_key(fault=Fault.status(402))] = "PaymentRequiredError"
        elif roll < 0.32:  # one or two transient failures, then the profile
            key = emu.add_key(
                {"balance_eur": f"{rng.randint(1, 500)}.{rng.randint(0, 999):03d}000"}
            )
            emu.script(key, transient[i % len(transient)])
            planted[key] = "ok"
        elif roll < 0.42:
            planted[emu.add_key({"balance_eur": "0.000000"})] = "ok"
        else:
            balance = f"{rng.randint(0, 2000)}.{rng.randint(0, 999_999):06d}"
            held = f"{rng.randint(0, 3)}.{rng.randint(0, 99):02d}0000"
            planted[emu.add_key({"balance_eur": balance, "held_eur": held})] = "ok"
    return planted


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
