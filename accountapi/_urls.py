"""Pure checks on the base URL: credentials travel only over TLS unless the host is loopback."""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from yarl import URL

from ._exceptions import ConfigurationError

__all__ = ["check_base_url", "is_host", "is_loopback_host"]

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# A host name after IDNA encoding: letters, digits, "-", "_" and dots, nothing else (no
# space, backslash or percent sign that a resolver would choke on much later).
_HOST_NAME: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any address in 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_host(host: str) -> bool:
    """A host name (after IDNA encoding) or an IP address, bracketed or not."""
    if _HOST_NAME.fullmatch(host):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def check_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Return the normalised base URL (no trailing slash) or raise [`ConfigurationError`][accountapi.ConfigurationError].

    ``http://`` is refused for any host but loopback unless ``allow_insecure_http`` is
    set, since the API key would cross the network in clear text.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"base_url must be a str, not {type(url).__name__}")
    shown = repr(url) if "@" not in url else "(a URL with credentials in it, not shown)"
    try:
        # yarl is what aiohttp will parse it with: what it refuses here it would refuse
        # on the first request, as a bare ValueError.
        parts = URL(url)
        host = parts.raw_host
        _ = parts.port
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"base_url is not a valid URL ({exc}): {shown}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {shown}")
    if not is_host(host):
        raise ConfigurationError(f"base_url has an invalid host name: {shown}")
    if parts.raw_user or parts.raw_password:
        raise ConfigurationError("base_url must not carry credentials; pass api_key instead")
    if parts.raw_query_string or parts.raw_fragment or url.rstrip().endswith(("?", "#")):
        raise ConfigurationError(f"base_url must not have a query or fragment: {shown}")
    if parts.path.rstrip("/").endswith("/v1"):
        # Other SDKs spell the base URL with its version; this one adds /v1 itself, so
        # such a URL would answer 404 to every call.
        raise ConfigurationError(
            f"base_url must not end in /v1: the SDK adds it; drop it from {shown}"
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        raise ConfigurationError(
            f"refusing plain http:// to {host}: the API key would travel unencrypted; "
            "use https:// or pass allow_insecure_http=True "
            "(--allow-insecure-http on the command line)"
        )
    return url.rstrip("/")
