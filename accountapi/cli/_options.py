"""The options the commands share, and the client built from them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from accountapi._config import DEFAULT_CONCURRENCY
from accountapi._exceptions import AccountAPIError, APIConnectionError, ConfigurationError

from ._process import _fail
from ._writers import _BALANCES_FORMATS, _FORMATS

if TYPE_CHECKING:
    from yarl import URL

    from accountapi._client import AccountClient

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
    # The client (and aiohttp) is imported when a command runs, not for --help.
    from accountapi._client import AccountClient
    from accountapi._config import NOT_GIVEN, Limits

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
    from yarl import URL

    from accountapi._http._proxy import check_proxy_url, env_proxy, proxy_bypassed
    from accountapi._keys import resolve_base_url

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


_progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress on stderr.  [default: on when stderr is a terminal]",
)
