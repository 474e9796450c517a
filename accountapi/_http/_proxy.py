"""The proxy a client sends its requests through: checked once, never shown with its password.

A proxy is an ``http://`` URL, optionally with ``user:password@`` for the proxy's own
Basic authentication. Requests to an ``https://`` service are tunnelled through it with
``CONNECT``, so the proxy sees host names, never keys. Credentials are kept only inside
`ProxyURL` and handed to aiohttp alone; everything shown (``repr``, errors, logs)
is ``scheme://host:port``.
"""

from __future__ import annotations

import base64
import netrc
import os
import urllib.request
from pathlib import Path
from typing import Final

from yarl import URL

from accountapi._exceptions import ConfigurationError
from accountapi._urls import is_host

__all__ = ["ProxyURL", "check_proxy_url", "env_proxy", "proxy_bypassed"]

_EXAMPLE: Final = "e.g. http://proxy.internal:3128 or http://user:password@proxy.internal:3128"


class ProxyURL:
    """A checked ``http://`` proxy URL. ``str()`` and ``repr()`` show ``scheme://host:port``."""

    __slots__ = ("_url", "shown")

    def __init__(self, url: URL) -> None:
        self._url = url  # checked by check_proxy_url; may carry credentials
        self.shown: Final = str(URL.build(scheme=url.scheme, host=url.host or "", port=url.port))

    @property
    def url(self) -> URL:
        """The URL with its credentials: for aiohttp's ``proxy=`` and nothing else."""
        return self._url

    @property
    def has_credentials(self) -> bool:
        return bool(self._url.raw_user or self._url.raw_password)

    def with_credentials(self, user: str, password: str) -> ProxyURL:
        return ProxyURL(self._url.with_user(user).with_password(password))

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every form of the password a proxy could echo: raw, decoded, and the Basic
        token of ``Proxy-Authorization``; empty without credentials."""
        url = self._url
        if not self.has_credentials:
            return ()
        token = base64.b64encode(f"{url.user or ''}:{url.password or ''}".encode()).decode()
        return tuple(secret for secret in (url.raw_password, url.password, token) if secret)

    def hide(self, text: str) -> str:
        """``text`` with every form of this proxy's password (and its Basic token) masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"ProxyURL({self.shown!r})"


def _shown(value: str | URL) -> str:
    """How a proxy URL that failed a check is named in the error: never with credentials."""
    try:
        url = value if isinstance(value, URL) else URL(value)
        if url.raw_user or url.raw_password:
            url = url.with_user(None)
        return repr(str(url))
    except (ValueError, TypeError):
        text = str(value)
        return "(not shown: it holds credentials)" if "@" in text else repr(text)


def check_proxy_url(value: object, *, source: str = "proxy") -> ProxyURL:
    """``value`` as a `ProxyURL`, or [`ConfigurationError`][accountapi.ConfigurationError] naming ``source``.

    Accepts a ``str`` or ``yarl.URL`` of the form ``http://[user:password@]host[:port]``;
    other schemes (``https://``, ``socks5://``) are refused, as aiohttp cannot use them.
    """
    if not isinstance(value, str | URL):
        raise ConfigurationError(f"{source} must be a str or yarl.URL, not {type(value).__name__}")
    try:
        url = value if isinstance(value, URL) else URL(value.strip())
        host = url.raw_host
        _ = url.port
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"{source} is not a valid URL: {_shown(value)} ({_EXAMPLE})"
        ) from None
    if url.scheme != "http":
        what = f"{url.scheme}://" if url.scheme else "a URL without a scheme"
        raise ConfigurationError(
            f"{source} must be an http:// proxy URL, not {what} ({_EXAMPLE}); "
            "https:// services are reached through it with CONNECT"
        )
    if not host or not is_host(host):
        raise ConfigurationError(f"{source} has no valid host: {_shown(value)} ({_EXAMPLE})")
    if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment:
        raise ConfigurationError(
            f"{source} must be scheme://host:port only, without a path, query or fragment: "
            f"{_shown(value)}"
        )
    return ProxyURL(url.with_path("").with_query(None).with_fragment(None))


def proxy_bypassed(host: str) -> bool:
    """Whether ``$NO_PROXY`` (``no_proxy``) names ``host``: it is then reached directly."""
    return bool(urllib.request.proxy_bypass(host))


def env_proxy(target: URL) -> ProxyURL | None:
    """The proxy the environment names for ``target``, read as aiohttp's ``trust_env`` does.

    ``$HTTPS_PROXY``/``https_proxy`` for an ``https://`` target (``HTTP_PROXY`` for
    ``http://``), none for a host in ``$NO_PROXY``; a proxy without credentials of its own
    takes them from its netrc entry (``$NETRC`` or ``~/.netrc``), if any.
    """
    host = target.host
    if host is None or proxy_bypassed(host):
        return None
    value = urllib.request.getproxies().get(target.scheme)
    if not value:
        return None
    name = f"{target.scheme}_proxy"
    proxy = check_proxy_url(value, source=f"${name.upper()} (or ${name})")
    if not proxy.has_credentials and proxy.url.host is not None:
        login = _netrc_login(proxy.url.host)
        if login is not None:
            proxy = proxy.with_credentials(*login)
    return proxy


def _netrc_login(host: str) -> tuple[str, str] | None:
    """The login and password netrc holds for ``host``; ``None`` without a usable entry."""
    path = os.environ.get("NETRC")
    try:
        entry = netrc.netrc(path or str(Path.home() / ".netrc")).authenticators(host)
    except (OSError, netrc.NetrcParseError, RuntimeError):
        return None
    if entry is None:
        return None
    login, _, password = entry
    return login, password or ""
