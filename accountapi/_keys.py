"""API keys: where they come from, what makes one malformed, and how to name one safely.

A key is never printed; :func:`key_hint` gives the short form (``dpct_…P6q7``) that errors,
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
    "check_key",
    "key_hint",
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
"""A match when a str could be an API key, else None: :func:`check_key` without the error."""


def key_hint(key: str) -> str:
    """Name a key without revealing it: its prefix and last four characters, ``dpct_…P6q7``."""
    if len(key) < 12 or not key.isascii():
        return "…"
    prefix, sep, _ = key.partition("_")
    head = prefix + sep if sep and len(prefix) <= 8 else ""
    return f"{head}…{key[-4:]}"


def check_key(key: object) -> str:
    """Return ``key`` if it could be a valid API key, else raise :class:`MalformedAPIKeyError`."""
    if type(key) is str and match_key(key) is not None:
        return key
    if not isinstance(key, str):
        raise MalformedAPIKeyError(f"an API key must be a str, not {type(key).__name__}")
    if not key:
        raise MalformedAPIKeyError("the API key is empty")
    # Say what is wrong without echoing the key itself.
    raise MalformedAPIKeyError(
        "the API key contains whitespace, control or non-ASCII characters "
        f"or is over 512 characters: {key_hint(key)}",
        key_hint=key_hint(key),
    )


def resolve_api_key(explicit: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The key to use when a call names none: the argument, then $ACCOUNTAPI_API_KEY, then $DEPICTA_API_KEY."""
    if explicit is not None:
        return check_key(explicit)
    for name in KEY_ENV_VARS:
        value = environ.get(name)
        if value:
            return check_key(value.strip())
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
