"""``accountapi balances``: every key of a keys file, streamed, with its outputs checked and
opened before the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, cast

import click

from accountapi._exceptions import APIResponseValidationError, APIStatusError

from ._keyfile import _KeySource
from ._options import (
    _balances_format_option,
    _client,
    _concurrency_option,
    _progress_option,
    _service_options,
    _unreachable,
)
from ._output import (
    AtomicFile,
    OutputError,
    SummaryFile,
    same_file_as,
    stdin_input,
    stdout_output,
)
from ._process import (
    EXIT_STATUS_HELP,
    _fail,
    _OutputClosed,
    _run_async,
    _silence_stdout,
    _WriteFailed,
    ended_with,
    exit_status,
)
from ._resume import ResumeError, read_previous
from ._writers import (
    _COLUMNS,
    _print_summary,
    _progress,
    _write_summary_json,
    _writer,
    summary_record,
)

if TYPE_CHECKING:
    from rich.progress import TaskID

    from accountapi._balance_results import BalanceResult
    from accountapi._balance_summary import BalanceSummary
    from accountapi._client import AccountClient

# The longest --expiring-within: a century, far past any credit's life and well inside
# the calendar (a window of millions of days overflows Python's dates).
_MAX_EXPIRY_DAYS: Final = 36_500


def _parse_below(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    from accountapi._thresholds import parse_amount

    try:
        return parse_amount(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(epilog=EXIT_STATUS_HELP)
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
    sink: SummaryFile | None = None
    target = None
    report = _Report()
    ended = 0
    try:
        try:
            # --output first: a refused --output must not have left a --summary-json.
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
                    report=report,
                    out=out,
                    summary=summary,
                    header_written=previous is not None and previous.csv_header,
                    out_name=_output_name(resume, output),
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
    except BaseException as exc:
        ended = ended_with(exc)
        raise
    finally:
        try:
            try:
                source.close()
            finally:  # whatever closing raised, the temporary file goes
                if target is not None:
                    target.discard()  # a run that did not end: PATH stays as it was
                elif out is not None:
                    with contextlib.suppress(OSError):  # a row that failed already said so
                        out.close()
                if sink is not None:
                    # Last, once --output is committed or not: the summary says how it ended.
                    status = ended or exit_status(summary)
                    failure = _finish_summary_json(sink, report.record, status)
                    if failure is not None and not ended:
                        raise _WriteFailed(failure)
        except BaseException:
            if sink is not None:  # cut short (a signal while it is written): PATH as it was
                sink.discard()
            raise
    return exit_status(summary)


class _Report:
    """What `_balances()` leaves for ``--summary-json``: the run's summary record, once
    any request was answered or a row written (None: nothing worth a summary)."""

    __slots__ = ("record",)

    def __init__(self) -> None:
        self.record: dict[str, object] | None = None


def _finish_summary_json(
    sink: SummaryFile, record: dict[str, object] | None, status: int
) -> str | None:
    """Write the run's summary with the status the process exits with, and make it
    visible; the one-line error when that failed. Without a record PATH stays as it was."""
    if record is None:
        sink.discard()
        return None
    record["exit_status"] = status
    failure = _write_summary_json(sink.stream, record)
    if failure is not None:
        sink.discard()
        return str(_WriteFailed.of(f"--summary-json {sink.path}", failure))
    try:
        sink.commit(status)
    except OutputError as exc:
        return str(exc)
    return None


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
    output, by resolved path and by inode, so no run truncates or appends to its input.
    Without --output or --resume the rows go to stdout, which is then one of the outputs."""
    rows: dict[str, Path | int | None] = (
        {"stdout": stdout_output()} if resume is None and output is None else {}
    )
    outputs = {**rows, "--resume": resume, "--output": output, "--summary-json": summary_json}
    keys: Path | int | None = Path(keys_file) if keys_file != "-" else stdin_input()
    inputs: dict[str, Path | int] = {} if keys is None else {"KEYS_FILE": keys}
    try:
        same_file_as({k: v for k, v in outputs.items() if v is not None}, inputs)
    except OutputError as exc:
        _fail(str(exc))


def _new_summary(below: Decimal | None, expiring_within: int | None) -> BalanceSummary:
    """The run's summary; with thresholds, expiry judged against one moment, the start."""
    from accountapi._balance_summary import BalanceSummary
    from accountapi._thresholds import BalanceThresholds

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


async def _balances(
    client: AccountClient,
    source: _KeySource,
    *,
    fmt: str,
    concurrency: int,
    ordered: bool,
    progress: bool | None,
    on_result: Callable[[BalanceResult], None] | None = None,
    report: _Report | None = None,
    out: IO[str] | None = None,
    summary: BalanceSummary | None = None,
    header_written: bool = False,
    out_name: str = "stdout",
) -> BalanceSummary:
    """Stream the keys through ``client.balances``, writing each result as it comes.

    ``out`` defaults to stdout; ``summary`` may already count an earlier run's results
    (``--resume``), so the closing summary covers the whole keys file. A row that cannot
    be written (``out_name`` says where) stops the run with `_WriteFailed`, after
    the summary of the rows written. ``report`` receives the summary's record for
    ``--summary-json``, which the command writes once it knows how the run ended.
    """
    if out is None:
        out = sys.stdout
    if summary is None:
        from accountapi._balance_summary import BalanceSummary

        summary = BalanceSummary()
    writer = _writer(fmt, out, source.last_line, summary, header_written=header_written)
    bar = _progress(progress)
    task = cast("TaskID", 0)
    if bar is not None:
        task = bar.add_task("balances", total=source.total, errors=0)
        bar.start()
    reached = False  # has any request got an answer from the service?
    # Bound once, not looked up for every key.
    write, line_of, flush, count = writer.write, source.line_of, out.flush, summary.add
    started = time.perf_counter()
    interrupted = False
    try:
        async with (
            client,
            client.balances(source.keys, concurrency=concurrency, ordered=ordered) as results,
        ):
            async for result in results:
                if not reached:  # until the first answer: afterwards nothing to decide
                    if result.ok or isinstance(
                        result.error, APIStatusError | APIResponseValidationError
                    ):
                        reached = True
                    elif _unreachable(result.error):
                        _fail(f"cannot reach {client.base_url}: {result.error}")
                try:
                    write(result, line_of(result.index))
                    flush()  # a row is seen when it is ready, also through a pipe
                except BrokenPipeError:
                    raise
                except OSError as exc:  # ENOSPC, EFBIG, EIO: no row can be kept
                    raise _WriteFailed.of(out_name, exc) from None
                count(result)  # only once written: a row the reader missed is not counted
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
            if report is not None:
                record = summary_record(summary, total, elapsed, interrupted)
                record["skipped_lines"] = source.skipped
                record["resumed_lines"] = source.resumed
                report.record = record
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


def _open_summary_json(path: Path | None) -> SummaryFile | None:
    """Open ``--summary-json`` before the run: a path that cannot be written fails now."""
    if path is None:
        return None
    try:
        return SummaryFile(path)
    except OutputError as exc:
        _fail(str(exc))
