"""``accountapi profile``: the profile behind one key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from accountapi._exceptions import AccountAPIError, AuthenticationError

from ._keyfile import _first_key
from ._options import _client, _service_options, _unreachable
from ._process import EXIT_AUTH, EXIT_FAILED, EXIT_OK, EXIT_STATUS_HELP, _error, _fail, _run_async
from ._text import money, safe_text

if TYPE_CHECKING:
    from accountapi._client import AccountClient
    from accountapi._models import Profile

# -- profile -------------------------------------------------------------------------------


@click.command(epilog=EXIT_STATUS_HELP)
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
