"""API keys: where they come from, what makes one malformed, and how to name one safely.

A key is never printed; [`key_hint()`][accountapi.key_hint] gives the short form (``dpct_…P6q7``) that errors,
logs, results and the CLI use instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Final

from ._exceptions import ConfigurationError, MalformedAPIKeyError

__all__ = [
    "DEFAULT_BASE_URL",
    "Credential",
    "check_key",
    "key_hint",
    "malformed_key_error",
    "match_key",
    "resolve_api_key",
    "resolve_base_url",
]

DEFAULT_BASE_URL: Final = "https://api.depicta.ai"
KEY_ENV_VARS: Final = ("ACCOUNTAPI_API_KEY", "DEPICTA_API_KEY")
URL_ENV_VARS: Final = ("ACCOUNTAPI_BASE_URL", "DEPICTA_API_URL")

# Visible ASCII only: no space, tab, CR/LF or other control characters, nothing non-ASCII,
# so a key can never split or smuggle a header.
_KEY: Final = re.compile(r"[!-~]{1,512}")
match_key: Final = _KEY.fullmatch
"""A match when a str could be an API key, else None: `check_key()` without the error."""


_HIDDEN: Final = 8  # characters of a key its hint never shows, however short the key


def key_hint(key: str) -> str:
    """Name a key without revealing it: its prefix and last four characters, ``dpct_…P6q7``."""
    if len(key) < 12 or not key.isascii():
        return "…"
    # The prefix is up to the first "_" when that is among the first 9 characters (a
    # prefix of at most 8): found without copying the rest of the key, as partition would.
    # Shown only while at least 8 characters stay hidden: in a short key the prefix and
    # the last four could otherwise be the whole key.
    end = key.find("_", 0, 9) + 1
    if len(key) - end < _HIDDEN + 4:
        end = 0
    return f"{key[:end]}…{key[-4:]}"


class Credential:
    """An API key as the SDK holds it: ``repr`` and ``str`` show only the hint.

    Error trackers and ``traceback.TracebackException(capture_locals=True)`` record every
    local variable of every frame an exception passed through, by its ``repr``. Inside
    the SDK a key therefore lives in this type from the moment it is received: the raw
    value is read only where the ``Authorization`` header is built and where a key gate
    needs it (``value`` once checked, or `reveal()`), never kept in a frame local.
    Building one never raises; `check()` says whether the value could be a key.

    ``value`` and ``headers`` are plain attributes (read on every request: a property
    would cost a call each time); other modules read them, only this one and the call
    path write them.
    """

    __slots__ = ("_raw", "headers", "value")

    def __init__(self, value: object, *, valid: bool = False) -> None:
        if type(value) is not str and isinstance(value, str):
            value = str.__str__(value)  # a str subclass: keep the characters, not the class
        self._raw = value
        # The key once checked ("" until then): what the header and the gate are built from.
        self.value: str = value if valid and type(value) is str else ""
        # The request headers for this key, built by the call path on first use.
        self.headers: Mapping[str, str] | None = None

    @property
    def hint(self) -> str:
        """The key as ``dpct_…abcd``; ``…`` for something that is not a key at all."""
        raw = self._raw
        return key_hint(raw) if isinstance(raw, str) else "…"

    def reveal(self) -> str:
        """The key itself, for the ``Authorization`` header and the key gate only."""
        return self.check().value

    def check(self) -> Credential:
        """Return self if the value could be an API key, else raise [`MalformedAPIKeyError`][accountapi.MalformedAPIKeyError].

        No frame of this method holds the value in a local, so the error's traceback
        shows none.
        """
        if self.value:
            return self
        if type(self._raw) is str and match_key(self._raw) is not None:
            self.value = self._raw
            return self
        raise malformed_key_error(self)

    def fresh(self) -> Credential:
        """A new, unchecked credential for the same value, with no headers built (for a
        client of its own: its headers carry that client's defaults)."""
        return Credential(self._raw)

    def with_headers(self, headers: Mapping[str, str]) -> Credential:
        """This key, checked, carrying other request headers (one call's ``extra_headers``);
        this credential's own headers stay as they are."""
        copy = Credential(self.value, valid=True)
        copy.headers = headers
        return copy

    def __repr__(self) -> str:
        return f"<API key {self.hint}>"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("an API key is not pickled")


def malformed_key_error(credential: Credential) -> MalformedAPIKeyError:
    """The error for a value that cannot be a key, naming it only by its hint (not raised)."""
    value = credential._raw
    if not isinstance(value, str):
        return MalformedAPIKeyError(f"an API key must be a str, not {type(value).__name__}")
    if not value:
        return MalformedAPIKeyError("the API key is empty")
    hint = credential.hint
    return MalformedAPIKeyError(
        "the API key contains whitespace, control or non-ASCII characters "
        f"or is over 512 characters: {hint}",
        key_hint=hint,
    )


def check_key(key: object) -> str:
    """Return ``key`` (as a plain str) if it could be a valid API key, else raise
    [`MalformedAPIKeyError`][accountapi.MalformedAPIKeyError]. A ``str`` subclass is accepted."""
    credential = Credential(key)
    del key
    return credential.reveal()


def resolve_api_key(
    explicit: Credential | None, environ: Mapping[str, str] = os.environ
) -> Credential | None:
    """The key to use when a call names none: the argument, then $ACCOUNTAPI_API_KEY, then
    $DEPICTA_API_KEY. Not checked here (see `Credential.check()`)."""
    if explicit is not None:
        return explicit
    for name in KEY_ENV_VARS:
        value = environ.get(name)
        if value:
            return Credential(value.strip())
    return None


def resolve_base_url(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The base URL: the argument, then $ACCOUNTAPI_BASE_URL, then $DEPICTA_API_URL, then the service."""
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit.strip():
            raise ConfigurationError("base_url must be a non-empty URL string")
        return explicit.strip()
    for name in URL_ENV_VARS:
        value = environ.get(name, "").strip()
        if value:
            return value
    return DEFAULT_BASE_URL
