"""Every ```python block of the README runs as written, against the emulator.

Script blocks run as scripts (a child Python with ``$ACCOUNTAPI_BASE_URL`` pointing at
the emulator and ``$ACCOUNTAPI_API_KEY`` a key it knows), web examples serve real
requests, and the testing examples run as a user's test files in a bare project
(pytester), under pytest-asyncio's default strict mode. A block added to the README
without a test here fails ``test_every_python_block_is_run_by_a_test``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
import uvicorn
from aiohttp import web
from test_redis_gate import RedisServer

from accountapi._clock import override_default_clock
from accountapi._keys import key_hint
from accountapi.testing import Emulator, Fault, VirtualClock

pytest_plugins = ("pytester",)

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
_HEADING = re.compile(r"^#+ (.*)$", re.M)

# Each web example answers 401 for these X-Key values (None: no header at all).
BAD_KEYS = (
    None,
    "",
    "dpct_" + "u" * 32,  # unknown to the service
    "not a key",  # malformed: refused before any request
    "dpct_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
)

# Heading of the section -> the test that runs its python block.
RUN_BY = {
    "Usage": "test_the_usage_example",
    "In a FastAPI backend": "test_the_fastapi_example_answers_401_for_every_bad_key",
    "In an aiohttp server": "test_the_aiohttp_example_answers_401_for_every_bad_key",
    "Sync client: without async (Django views, Celery tasks, scripts, notebooks)": "test_the_sync_example",
    "Many keys": "test_the_many_keys_example",
    "Alerting on low balances": "test_the_alerting_example",
    "Errors": "test_the_errors_example",
    "Per-call options, default headers and the answer's metadata": "test_the_options_example",
    "Timeouts, retries and limits": "test_the_timeouts_example",
    "Proxies and TLS": "test_the_proxy_example",
    "Under overload": "test_the_overload_example",
    "Sharing the limit across processes (Redis)": "test_the_redis_example",
    "Testing your application": "test_the_testing_example",
    "With FastAPI": "test_the_fastapi_recipe",
    "With Flask (or Django) and `SyncAccountClient`": "test_the_flask_recipe",
    "In a Celery task (or any plain function)": "test_the_celery_recipe",
}

# A user's project running a README test file: each warning an error, pytest-asyncio in
# its default strict mode; the heavy plugins this environment also has (not ours) stay
# out, to keep each run near a second.
RECIPE_RUN = (
    "-p",
    "no:cacheprovider",
    "-p",
    "no:schemathesis",
    "-p",
    "no:hypothesispytest",
    "-W",
    "error",
    "-o",
    "asyncio_mode=strict",
    "-o",
    "asyncio_default_fixture_loop_scope=function",
)


def _block_after(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    start = text.index(heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


def _blocks() -> list[tuple[str, str]]:
    """(heading, source) of every python block, in README order."""
    text = README.read_text()
    found = []
    for match in _BLOCK.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        found.append((headings[-1], match.group(1)))
    return found


def test_every_python_block_is_run_by_a_test() -> None:
    """One block per section, and each section's block has a test below."""
    headings = [heading for heading, _ in _blocks()]
    assert len(headings) == len(set(headings)), "two python blocks under one heading"
    assert sorted(headings) == sorted(RUN_BY)
    here = Path(__file__).read_text()
    plugin_tests = (Path(__file__).parent / "test_pytest_plugin.py").read_text()
    for test in RUN_BY.values():
        name = test.rsplit("::", 1)[-1]
        assert f"def {name}(" in (plugin_tests if "::" in test else here), test


async def _run_script(heading: str, emulator: Emulator, key: str, cwd: Path, **env: str) -> str:
    """Run a README block as a script; returns its stdout (it must exit 0)."""
    source = _block_after(f"# {heading}\n")
    child_env = {
        **os.environ,
        "ACCOUNTAPI_BASE_URL": emulator.url,
        "ACCOUNTAPI_API_KEY": key,
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        source,
        cwd=cwd,
        env=child_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_the_usage_example(emulator: Emulator, tmp_path: Path) -> None:
    """Prints the balance, held amount and expiry; dismisses a pending notice."""
    key = emulator.add_key({"balance_eur": "7.250000", "pending_credit_notice": True})
    out = await _run_script("Usage", emulator, key, tmp_path)
    assert out.startswith("7.250000 ")
    assert [r.method for r in emulator.records] == ["GET", "POST"]
    assert emulator.profile(key)["pending_credit_notice"] is False


async def test_the_errors_example(emulator: Emulator, tmp_path: Path) -> None:
    """The placeholder key is unknown to the service: the 401 branch returns None."""
    out = await _run_script("Errors", emulator, emulator.add_key(), tmp_path)
    assert out == "None\n"
    assert [r.status for r in emulator.records] == [401]


async def test_the_options_example(emulator: Emulator, tmp_path: Path) -> None:
    """Per-call headers and the default ones reach the service; the request id printed
    is the one the emulator gave the third request."""
    key = emulator.add_key()
    out = await _run_script(
        "Per-call options, default headers and the answer's metadata", emulator, key, tmp_path
    )
    first, _, third = emulator.records
    assert out == f"True 200\nrequest id for a support ticket: {third.request_id}\n"
    headers = {name.lower(): value for name, value in first.headers.items()}
    assert (headers["x-tenant"], headers["x-correlation-id"]) == ("acme", "req-42")


async def test_the_timeouts_example(emulator: Emulator, tmp_path: Path) -> None:
    """The configured client retries a 503 (the hook prints it) and then succeeds."""
    key = emulator.add_key()
    emulator.script(key, [Fault.status(503)])
    out = await _run_script("Timeouts, retries and limits", emulator, key, tmp_path)
    assert out.startswith("retrying after 503 in ")
    assert emulator.attempts(key) == 2


async def test_the_proxy_example(tmp_path: Path) -> None:
    """Through a real proxy with a login to the emulator over HTTPS, trusting a private CA."""
    import ssl

    import trustme
    from proxyserver import forward_proxy

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "corp-ca.pem"))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    async with (
        Emulator(ssl=server_ctx) as emu,
        forward_proxy(login=("user", "secret")) as proxy,
    ):
        key = emu.add_key({"balance_eur": "5.500000"})
        out = await _run_script(
            "Proxies and TLS",
            emu,
            key,
            tmp_path,
            OUTBOUND_PROXY=f"http://user:secret@127.0.0.1:{proxy.port}",
            CORP_CA_BUNDLE=str(tmp_path / "corp-ca.pem"),
        )
        assert out == "5.500000\n"
        assert proxy.request_lines[0].startswith("CONNECT 127.0.0.1:")
        assert emu.attempts(key) == 1


async def test_the_overload_example(emulator: Emulator, tmp_path: Path) -> None:
    """50 coalesced reads of one key share one request, and the budget is full."""
    key = emulator.add_key(latency=0.05)
    out = await _run_script("Under overload", emulator, key, tmp_path)
    assert out == "50 answers, retry budget 500/500\n"
    assert emulator.attempts(key) == 1


async def test_the_many_keys_example(emulator: Emulator, tmp_path: Path) -> None:
    """One line per key, then the summary: the duplicate account is counted once."""
    twin = {"id": "acct_twin", "balance_eur": "10.000000"}
    keys = [emulator.add_key(twin), emulator.add_key(twin), "dpct_" + "u" * 32]
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    out = await _run_script("Many keys", emulator, keys[0], tmp_path)
    lines = out.splitlines()
    assert len(lines) == 4
    assert sum("AuthenticationError" in line for line in lines[:3]) == 1
    assert lines[3] == "2 ok; 10.000000 EUR over 1 accounts"


async def test_the_alerting_example(emulator: Emulator, tmp_path: Path) -> None:
    """Prints the low and the expiring key (not the fine one), then the counts."""
    soon = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    keys = [
        emulator.add_key({"balance_eur": "4.999999", "credits_expire_at": None}),
        emulator.add_key({"balance_eur": "5.000000", "credits_expire_at": soon}),
        emulator.add_key({"balance_eur": "5.000000", "credits_expire_at": None}),
    ]
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    out = await _run_script("Alerting on low balances", emulator, keys[0], tmp_path)
    lines = out.splitlines()
    assert sorted(line.split()[:2] for line in lines[:2]) == sorted(
        [[key_hint(keys[0]), "4.999999"], [key_hint(keys[1]), "5.000000"]]
    )
    assert lines[2] == "1 low keys in 1 accounts; 1 expiring"


async def test_the_sync_example(emulator: Emulator, tmp_path: Path) -> None:
    """SyncAccountClient as written: one line per key in keys.txt."""
    keys = [emulator.add_key({"balance_eur": "1.500000"}) for _ in range(3)]
    (tmp_path / "keys.txt").write_text("\n".join(keys) + "\n")
    heading = "Sync client: without async (Django views, Celery tasks, scripts, notebooks)"
    out = await _run_script(heading, emulator, keys[0], tmp_path)
    assert sorted(out.splitlines()) == sorted(f"{key_hint(key)} 1.500000" for key in keys)


async def test_the_redis_example(emulator: Emulator, tmp_path: Path) -> None:
    """The Redis gate example against a real redis-server on a loopback port."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is not installed (.ci/run installs it where missing)")
    server = RedisServer(executable)
    server.start()
    try:
        key = emulator.add_key({"balance_eur": "3.000000"})
        heading = "Sharing the limit across processes (Redis)"
        out = await _run_script(heading, emulator, key, tmp_path, REDIS_URL=server.url)
    finally:
        server.kill()
    assert out == "3.000000\n"


def _load(source: str, name: str) -> ModuleType:
    module = ModuleType(name)
    exec(compile(source, f"README:{name}", "exec"), module.__dict__)  # noqa: S102 - our README
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_aiohttp_example_answers_401_for_every_bad_key(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No header, an empty, malformed or unknown key: 401; a good key: its exact balance;
    out of credit: 402; a service still failing after the retries: 503."""
    good = emulator.add_key({"balance_eur": "12.345000"})
    monkeypatch.setenv("ACCOUNTAPI_BASE_URL", emulator.url)
    example = _load(_block_after("### In an aiohttp server"), "readme_aiohttp")
    assert "web.run_app(app" in _block_after("### In an aiohttp server")
    runner = web.AppRunner(example.app)
    with override_default_clock(VirtualClock()):  # the app's own client: instant retries
        await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        await _answers_as_documented(port, good, emulator)
    finally:
        await runner.cleanup()


async def _answers_as_documented(port: int, good: str, emulator: Emulator) -> None:
    """Every BAD_KEYS value gets 401; the good key its exact balance, as a string; an
    account out of credit 402; a service still failing after the retries 503 (the
    retries' waits on the virtual clock the test put in place)."""
    broke = emulator.add_key(fault=Fault.status(402))
    down = emulator.add_key(fault=Fault.status(503))
    busy = emulator.add_key(fault=Fault.rate_limited(1))
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        for key in BAD_KEYS:
            headers = {} if key is None else {"X-Key": key.encode().decode("latin-1")}
            async with http.get("/balance", headers=headers) as answer:
                assert answer.status == 401, key
        async with http.get("/balance", headers={"X-Key": good}) as answer:
            assert answer.status == 200
            assert await answer.json() == {"balance_eur": "12.345000"}
        for key, status in ((broke, 402), (down, 503), (busy, 503)):
            async with http.get("/balance", headers={"X-Key": key}) as answer:
                assert answer.status == status, (key_hint(key), await answer.text())
    assert emulator.attempts(down) >= 2  # retried before the app gave up


async def test_the_fastapi_example_answers_401_for_every_bad_key(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served by uvicorn on a loopback port: no header, an empty, malformed or unknown
    key: 401; a good key: its exact balance; out of credit: 402; a service still failing
    after the retries: 503."""
    good = emulator.add_key({"balance_eur": "12.345000"})
    monkeypatch.setenv("ACCOUNTAPI_BASE_URL", emulator.url)
    example = _load(_block_after("### In a FastAPI backend"), "readme_fastapi")
    # The socket listens before uvicorn starts: requests wait in its backlog until the
    # app (and its lifespan, which opens the AccountClient) is up. No polling.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(example.app, log_level="warning"))
    with override_default_clock(VirtualClock()):  # the app's own client: instant retries
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            await _answers_as_documented(port, good, emulator)
        finally:
            server.should_exit = True
            await asyncio.wait_for(serving, 10)
            listener.close()


def _run_tests(pytester: pytest.Pytester, heading: str, **modules: str) -> pytest.RunResult:
    """Run the README block under ``heading`` as a user's test file, beside ``modules``."""
    pytester.makepyfile(test_readme=_block_after(f"# {heading}\n"), **modules)
    return pytester.runpytest_subprocess(*RECIPE_RUN)


def test_the_testing_example(pytester: pytest.Pytester) -> None:
    """The fixtures example: a sync and an async test, faults retried on the virtual clock."""
    _run_tests(pytester, "Testing your application").assert_outcomes(passed=2)


def test_the_fastapi_recipe(pytester: pytest.Pytester) -> None:
    """The README's FastAPI app, unchanged, tested through ASGITransport and TestClient:
    its own AccountClient (built in the lifespan) retries a 503 and a 429 instantly."""
    app = _block_after("### In a FastAPI backend")
    _run_tests(pytester, "With FastAPI", app=app).assert_outcomes(passed=2)


def test_the_flask_recipe(pytester: pytest.Pytester) -> None:
    """The Flask app factory's SyncAccountClient retries a 503 and a 429 instantly; an
    unknown key is 401."""
    heading = "With Flask (or Django) and `SyncAccountClient`"
    _run_tests(pytester, heading).assert_outcomes(passed=2)


def test_the_celery_recipe(pytester: pytest.Pytester) -> None:
    """A task's plain function with a client from the environment retries a 429 and a 503
    instantly."""
    _run_tests(pytester, "In a Celery task (or any plain function)").assert_outcomes(passed=1)
