"""The SDK's logger, the ``ACCOUNTAPI_LOG`` switch, and the one line logged per attempt.

Everything the SDK logs goes to the logger ``accountapi`` and names a key only by its
hint. ``ACCOUNTAPI_LOG=debug`` (or ``info``) sets that logger's level when the first
client is built and, when the application has configured no logging at all, prints its
records to stderr; setting the logger to DEBUG yourself does the same without the
variable. At DEBUG, every attempt logs one line: method, path, status (or the error),
attempt number, elapsed time, request id and the key's hint. A handler that raises
(a log shipper that is down) never fails the call being logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._exceptions import AccountAPIError
    from ._http._transport import RawResponse

__all__ = ["LOG_ENV_VAR", "log_attempt", "log_joined", "logger", "setup_from_env"]

logger: Final = logging.getLogger("accountapi")
LOG_ENV_VAR: Final = "ACCOUNTAPI_LOG"
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FORMAT: Final = "%(asctime)s %(name)s %(levelname)s %(message)s"
_done: list[str] = []  # the value already applied (once per process and value)


def setup_from_env(environ: Any = os.environ) -> None:
    """Apply ``$ACCOUNTAPI_LOG`` (debug, info or warning) to the ``accountapi`` logger.

    Called when a client is built; does nothing when the variable is unset or was
    already applied. An unknown value is reported once as a warning, never raised: a
    typo in an environment variable must not stop an application.
    """
    value = environ.get(LOG_ENV_VAR, "").strip().lower()
    if not value or value in _done:
        return
    _done.append(value)
    level = _LEVELS.get(value)
    if level is None:
        logger.warning(
            "%s=%r is not one of %s; ignored", LOG_ENV_VAR, value[:20], ", ".join(_LEVELS)
        )
        return
    logger.setLevel(level)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        logger.addHandler(handler)


def log_attempt(
    method: str,
    path: str,
    number: int,
    elapsed: float,
    key_hint: str,
    answer: RawResponse | None,
    error: AccountAPIError | None,
) -> None:
    """One DEBUG line for an attempt that ended (answered, failed or refused before sending).

    ``answer`` must already have the key masked (the call path passes a 2xx through
    ``without_key``; error answers are masked before they become errors).
    """
    if error is None:
        outcome = "no answer" if answer is None else str(answer.status)
        request_id = None if answer is None else answer.headers.get("X-Request-Id")
    else:
        status = getattr(error, "status", None)
        name = type(error).__name__
        outcome = name if status is None else f"{status} {name}"
        request_id = getattr(error, "request_id", None)
    # a broken handler (a log shipper that is down) must not fail the call it logs
    with contextlib.suppress(Exception):
        logger.debug(
            "%s %s -> %s (attempt %d, %.1f ms, request_id=%s, key=%s)",
            method,
            path,
            outcome,
            number,
            elapsed * 1000.0,
            None if request_id is None else request_id[:200],
            key_hint,
        )


def log_joined(path: str, callers: int, hint: str) -> None:
    """One DEBUG line for a ``profile()`` call that joined a read in flight."""
    with contextlib.suppress(Exception):
        logger.debug(
            "GET %s joined a shared read not yet sent (%d callers wait for it, key=%s)",
            path,
            callers,
            hint,
        )
