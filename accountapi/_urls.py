"""Pure checks on the base URL: credentials travel only over TLS unless the host is loopback."""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError

__all__ = ["check_base_url", "is_loopback_host"]

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and any address in 127.0.0.0/8 or ``::1``."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Return the normalised base URL (no trailing slash) or raise :class:`ConfigurationError`.

    ``http://`` is refused for any host but loopback unless ``allow_insecure_http`` is
    set, since the API key would cross the network in clear text.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        raise ConfigurationError(f"base_url is not a valid URL: {url!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {url!r}")
    if parts.username or parts.password:
        raise ConfigurationError("base_url must not carry credentials; pass api_key instead")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment: {url!r}")
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback_host(host):
        raise ConfigurationError(
            f"refusing plain http:// to {host}: the API key would travel unencrypted; "
            "use https:// or pass allow_insecure_http=True"
        )
    return url.rstrip("/")
