"""The command line's --proxy, --no-proxy and proxy variables, through a real proxy on loopback."""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from proxyserver import ForwardProxy, forward_proxy
from test_cli import assert_no_full_key, assert_one_line_error, closed_port, run

from accountapi.testing import Emulator

LOGIN = ("alice", "pr0xy-s3cret")


@pytest.fixture(autouse=True)
def _no_env_proxy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets: no developer proxy, and an empty home (no ~/.netrc)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "accountapi_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


@pytest.fixture
async def proxy() -> AsyncIterator[ForwardProxy]:
    async with forward_proxy() as p:
        yield p


def with_login(proxy: ForwardProxy) -> str:
    return f"http://{LOGIN[0]}:{LOGIN[1]}@127.0.0.1:{proxy.port}"


async def test_profile_goes_through_the_proxy_option(
    emulator: Emulator, proxy: ForwardProxy
) -> None:
    """`profile --proxy URL`: the request is forwarded by the proxy, the profile printed."""
    key = emulator.add_key({"balance_eur": "1.250000"})
    result = await run(
        ["profile", "--base-url", emulator.url, "--proxy", proxy.url],
        env={"ACCOUNTAPI_API_KEY": key},
    )
    assert result.exit_code == 0, result.output
    assert "1.250000 EUR" in result.stdout
    assert proxy.forwarded == 1
    assert emulator.attempts(key) == 1


async def test_balances_goes_through_accountapi_proxy(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$ACCOUNTAPI_PROXY, with a login: every key's request goes through it, and the
    password is never printed."""
    keys = [emulator.add_key() for _ in range(3)]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    async with forward_proxy(login=LOGIN) as proxy:
        monkeypatch.setenv("ACCOUNTAPI_PROXY", with_login(proxy))
        result = await run(["balances", str(keys_file), "--base-url", emulator.url])
    assert result.exit_code == 0, result.output
    assert proxy.forwarded == 3
    assert all(emulator.attempts(key) == 1 for key in keys)
    assert LOGIN[1] not in result.output + result.stderr
    assert_no_full_key(result, keys)


async def test_http_proxy_is_read_for_an_http_base_url_and_no_proxy_bypasses_it(
    emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --proxy or $ACCOUNTAPI_PROXY, the standard variable for the base URL's
    scheme names the proxy; a host in $NO_PROXY is reached directly."""
    key = emulator.add_key()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    result = await run(["profile", "--base-url", emulator.url], env={"ACCOUNTAPI_API_KEY": key})
    assert result.exit_code == 0, result.output
    assert proxy.forwarded == 1
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    result = await run(["profile", "--base-url", emulator.url], env={"ACCOUNTAPI_API_KEY": key})
    assert result.exit_code == 0, result.output
    assert proxy.forwarded == 1
    assert emulator.attempts(key) == 2


async def test_no_proxy_ignores_the_environments_proxies(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--no-proxy connects directly although $ACCOUNTAPI_PROXY names a dead proxy."""
    key = emulator.add_key()
    monkeypatch.setenv("ACCOUNTAPI_PROXY", f"http://127.0.0.1:{closed_port()}")
    result = await run(
        ["profile", "--base-url", emulator.url, "--no-proxy"], env={"ACCOUNTAPI_API_KEY": key}
    )
    assert result.exit_code == 0, result.output
    assert emulator.attempts(key) == 1


async def test_the_proxy_option_beats_the_environment(
    emulator: Emulator, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--proxy wins over $ACCOUNTAPI_PROXY and $HTTP_PROXY (both dead here)."""
    key = emulator.add_key()
    monkeypatch.setenv("ACCOUNTAPI_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    result = await run(
        ["profile", "--base-url", emulator.url, "--proxy", proxy.url],
        env={"ACCOUNTAPI_API_KEY": key},
    )
    assert result.exit_code == 0, result.output
    assert proxy.forwarded == 1


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (
            ["--proxy", f"socks5://alice:{LOGIN[1]}@127.0.0.1:1080"],
            {},
            "--proxy must be an http://",
        ),
        (["--proxy", f"http://alice:{LOGIN[1]}@bad host:1"], {}, "--proxy"),
        (["--proxy", f"http://alice:{LOGIN[1]}@127.0.0.1:1/path"], {}, "--proxy must be"),
        ([], {"ACCOUNTAPI_PROXY": f"https://alice:{LOGIN[1]}@127.0.0.1:1"}, "$ACCOUNTAPI_PROXY"),
        ([], {"HTTP_PROXY": f"ftp://alice:{LOGIN[1]}@127.0.0.1:1"}, "$HTTP_PROXY"),
        (["--proxy", "http://127.0.0.1:1", "--no-proxy"], {}, "cannot be used together"),
    ],
)
async def test_a_bad_proxy_is_one_line_exit_2_without_the_password(
    emulator: Emulator, args: list[str], env: dict[str, str], needle: str
) -> None:
    """A proxy the CLI cannot use: `accountapi: error:` naming where it came from, exit 2,
    no traceback, no password, nothing sent."""
    key = emulator.add_key()
    for command in (["profile"], ["balances", "-"]):
        result = await run(
            [*command, "--base-url", emulator.url, *args],
            env={"ACCOUNTAPI_API_KEY": key, **env},
            input=key + "\n",
        )
        line = assert_one_line_error(result, needle)
        assert LOGIN[1] not in line
        assert_no_full_key(result, [key])
    assert emulator.attempts(key, None) == 0


async def test_a_dead_proxy_is_cannot_reach_naming_the_proxy_without_its_password(
    emulator: Emulator,
) -> None:
    """Nothing listens at the proxy: exit 2, one line saying the proxy cannot be reached."""
    key = emulator.add_key()
    port = closed_port()
    result = await run(
        [
            "profile",
            "--base-url",
            emulator.url,
            "--max-retries",
            "0",
            "--proxy",
            f"http://alice:{LOGIN[1]}@127.0.0.1:{port}",
        ],
        env={"ACCOUNTAPI_API_KEY": key},
    )
    line = assert_one_line_error(result, f"cannot connect to the proxy http://127.0.0.1:{port}")
    assert LOGIN[1] not in line


async def test_https_proxy_tunnels_the_real_cli_to_an_https_service(
    tmp_path: Path,
) -> None:
    """`python -m accountapi profile` with $HTTPS_PROXY (and a login) against the emulator
    over HTTPS: one CONNECT through the proxy, TLS verified with the CA in $SSL_CERT_FILE."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    async with Emulator(ssl=server_ctx) as emu, forward_proxy(login=LOGIN) as proxy:
        key = emu.add_key({"balance_eur": "2.000000"})
        env = {
            **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
            "ACCOUNTAPI_API_KEY": key,
            "HTTPS_PROXY": with_login(proxy),
            "SSL_CERT_FILE": str(ca_file),
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "accountapi",
            "profile",
            "--base-url",
            emu.url,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(child.communicate(), 30)
        assert child.returncode == 0, err.decode()
        assert "2.000000 EUR" in out.decode()
        assert proxy.request_lines == [f"CONNECT 127.0.0.1:{emu.url.rsplit(':', 1)[1]} HTTP/1.1"]
        assert proxy.proxy_authorizations[0] is not None
        assert emu.attempts(key) == 1
