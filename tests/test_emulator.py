"""Behaviour of `accountapi.testing`, observed from a raw aiohttp client over loopback."""

from __future__ import annotations

import ast
import asyncio
import datetime as dt
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import accountapi.testing
from accountapi.testing import Emulator, Fault, RequestRecord, default_profile
from accountapi.testing.__main__ import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
PROFILE = "/v1/account/profile"
DISMISS = "/v1/account/notifications/dismiss"
USER_FIELDS = {
    "balance_eur",
    "created_at",
    "credit_limit_cents",
    "credits_expire_at",
    "email",
    "email_verified",
    "free_trial_pending_eur",
    "held_eur",
    "id",
    "name",
    "pending_credit_notice",
    "prompt_analysis_opt_in",
    "providers",
    "two_factor_enabled",
}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def fetch(
    http: aiohttp.ClientSession,
    emu: Emulator,
    key: str | None,
    path: str = PROFILE,
    method: str = "GET",
) -> tuple[int, Any, bytes]:
    """One request; returns status, headers and body bytes."""
    headers = auth(key) if key is not None else {}
    async with http.request(method, emu.url + path, headers=headers, allow_redirects=False) as resp:
        return resp.status, resp.headers, await resp.read()


# -- public surface ------------------------------------------------------------------


def test_exported_names_are_pinned() -> None:
    """`accountapi.testing` exports exactly the documented names, sorted."""
    assert accountapi.testing.__all__ == [
        "Emulator",
        "Fault",
        "RequestRecord",
        "ThreadedEmulator",
        "VirtualClock",
        "default_profile",
    ]


def test_emulator_imports_nothing_else_from_accountapi() -> None:
    """The emulator's modules import only the stdlib, aiohttp, attrs and each other.

    The pytest plugin is not part of the emulator: it hands users a client too.
    """
    allowed = set(sys.stdlib_module_names) | {"aiohttp", "attrs"}
    for source in (ROOT / "accountapi" / "testing").glob("*.py"):
        if source.name == "pytest_plugin.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level > 1:
                    pytest.fail(f"{source.name} imports from outside accountapi.testing")
                roots = set() if node.level == 1 else {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{source.name} imports {roots - allowed}"


def test_default_profile_has_every_user_field_and_is_fresh() -> None:
    """default_profile() returns a new dict with every User field and a unique id and email."""
    first, second = default_profile(), default_profile()
    assert set(first) == USER_FIELDS
    assert first["balance_eur"] == "10.000000"
    assert first["free_trial_pending_eur"] is None
    assert first["id"] != second["id"]
    assert first["email"] != second["email"]
    first["providers"].append("github")
    assert second["providers"] == ["google"]


# -- keys, profiles and auth ------------------------------------------------------------


async def test_profile_is_served_to_a_known_key(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """GET /v1/account/profile with a valid key returns 200 {"user": profile} as JSON."""
    key = emu.add_key()
    status, headers, body = await fetch(http, emu, key)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"req_[0-9a-f]+", headers["X-Request-Id"])
    assert json.loads(body) == {"user": emu.profile(key)}


async def test_add_key_stores_overrides_as_wire_values(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Profile overrides are merged over the default and served verbatim, even wrong types."""
    key = emu.add_key({"balance_eur": 0.5, "name": None, "extra": [1]})
    _, _, body = await fetch(http, emu, key)
    user = json.loads(body)["user"]
    assert user["balance_eur"] == 0.5
    assert user["name"] is None
    assert user["extra"] == [1]
    assert user["held_eur"] == "0.000000"


def test_add_key_generates_distinct_service_shaped_keys() -> None:
    """Generated keys are `dpct_` plus 32 URL-safe characters; explicit and duplicate keys are checked."""
    emu = Emulator()
    keys = {emu.add_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(r"dpct_[A-Za-z0-9_-]{32}", key) for key in keys)
    assert emu.add_key(key="dpct_fixed_for_test_0001") == "dpct_fixed_for_test_0001"
    with pytest.raises(ValueError, match="already registered"):
        emu.add_key(key="dpct_fixed_for_test_0001")
    with pytest.raises(ValueError, match="whitespace"):
        emu.add_key(key="dpct_has space")


def test_reprs_never_show_a_full_key() -> None:
    """Neither the emulator's repr nor an unknown-key error message contains the key."""
    emu = Emulator()
    key = emu.add_key()
    assert key not in repr(emu)
    with pytest.raises(KeyError) as info:
        emu.profile(key + "x")
    assert key not in str(info.value)


@pytest.mark.parametrize(
    "authorization",
    [None, "dpct_no_scheme_at_all_000000", "Bearer", "Basic abc", "Bearer dpct_unknown_key_000000"],
    ids=["missing", "no-scheme", "empty", "wrong-scheme", "unknown"],
)
async def test_bad_or_missing_key_gets_401_with_request_id(
    emu: Emulator, http: aiohttp.ClientSession, authorization: str | None
) -> None:
    """A missing, malformed or unknown key gets 401 auth_invalid with the same id in body and header."""
    emu.add_key()
    headers = {} if authorization is None else {"Authorization": authorization}
    async with http.get(emu.url + PROFILE, headers=headers) as resp:
        body = await resp.json()
        assert resp.status == 401
        assert body["error"] == "auth_invalid"
        assert body["message"]
        assert body["request_id"] == resp.headers["X-Request-Id"]
        assert body["request_id"].startswith("req_")
        assert "dpct_" not in body["message"]


async def test_request_ids_are_unique(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Every response carries a different X-Request-Id."""
    key = emu.add_key()
    ids = {(await fetch(http, emu, key))[1]["X-Request-Id"] for _ in range(5)}
    ids.add((await fetch(http, emu, None))[1]["X-Request-Id"])
    assert len(ids) == 6


async def test_unknown_path_is_404_and_wrong_method_is_405(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Unknown paths answer 404 not_found and a known path with the wrong method 405, as JSON."""
    key = emu.add_key()
    status, _, body = await fetch(http, emu, key, "/v1/nope")
    assert (status, json.loads(body)["error"]) == (404, "not_found")
    status, headers, body = await fetch(http, emu, key, PROFILE, method="POST")
    assert status == 405
    assert headers["Allow"] == "GET"
    assert json.loads(body)["request_id"] == headers["X-Request-Id"]


async def test_dismiss_clears_pending_credit_notice(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """POST dismiss answers 204 and sets the key's pending_credit_notice to false."""
    key = emu.add_key()
    assert emu.profile(key)["pending_credit_notice"] is True
    status, _, body = await fetch(http, emu, key, DISMISS, method="POST")
    assert (status, body) == (204, b"")
    assert emu.profile(key)["pending_credit_notice"] is False
    _, _, body = await fetch(http, emu, key)
    assert json.loads(body)["user"]["pending_credit_notice"] is False


async def test_dismiss_status_200_sends_a_small_json_body(http: aiohttp.ClientSession) -> None:
    """Emulator(dismiss_status=200) answers dismiss with 200 and a JSON body."""
    async with Emulator(dismiss_status=200) as emu:
        key = emu.add_key()
        status, headers, body = await fetch(http, emu, key, DISMISS, method="POST")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert isinstance(json.loads(body), dict)


async def test_openapi_serves_the_contract_or_a_given_file(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """GET /openapi.yaml serves the packaged contract by default, a given file, or 404 with None."""
    status, _, body = await fetch(http, emu, None, "/openapi.yaml")
    assert status == 200
    assert b"/v1/account/profile" in body
    async with Emulator(openapi_path=None) as without:
        status, _, _ = await fetch(http, without, None, "/openapi.yaml")
    assert status == 404
    spec = tmp_path / "openapi.yaml"
    spec.write_text("openapi: 3.1.0\n", encoding="utf-8")
    async with Emulator(openapi_path=spec) as with_spec:
        status, _, body = await fetch(http, with_spec, None, "/openapi.yaml")
    assert (status, body) == (200, b"openapi: 3.1.0\n")


# -- faults --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (400, "bad_request"),
        (401, "auth_invalid"),
        (402, "credit_insufficient"),
        (403, "account_suspended"),
        (404, "not_found"),
        (409, "conflict"),
        (413, "payload_too_large"),
        (422, "unprocessable"),
        (429, "rate_limited"),
        (451, "unavailable_for_legal_reasons"),
        (500, "internal_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
    ],
)
async def test_status_fault_sends_the_documented_error_code(
    emu: Emulator, http: aiohttp.ClientSession, code: int, error: str
) -> None:
    """Fault.status(code) sends that status with the service's JSON error body and code."""
    key = emu.add_key(fault=Fault.status(code))
    status, headers, body = await fetch(http, emu, key)
    payload = json.loads(body)
    assert status == code
    assert payload["error"] == error
    assert payload["message"]
    assert payload["request_id"] == headers["X-Request-Id"]
    assert "details" not in payload


async def test_status_fault_overrides(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Fault.status() passes error, message, details and extra headers through."""
    fault = Fault.status(
        403,
        error="auth_email_not_verified",
        message="verify first",
        details={"field": ["x"]},
        headers={"X-Extra": "1"},
    )
    key = emu.add_key(fault=fault)
    status, headers, body = await fetch(http, emu, key)
    assert status == 403
    assert headers["X-Extra"] == "1"
    payload = json.loads(body)
    assert payload["error"] == "auth_email_not_verified"
    assert payload["message"] == "verify first"
    assert payload["details"] == {"field": ["x"]}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (1, "1"),
        (0.5, "0.5"),
        (2.0, "2"),
        ("soon", "soon"),
        (
            dt.datetime(2030, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "Wed, 02 Jan 2030 03:04:05 GMT",
        ),
    ],
)
async def test_retry_after_forms(
    emu: Emulator, http: aiohttp.ClientSession, retry_after: Any, header: str
) -> None:
    """retry_after is sent as seconds, verbatim text, or an HTTP-date in GMT."""
    key = emu.add_key(fault=Fault.status(503, retry_after=retry_after))
    _, headers, _ = await fetch(http, emu, key)
    assert headers["Retry-After"] == header


async def test_rate_limited_shorthands(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Fault.rate_limited sends 429 with Retry-After; rate_limited_ms sends only retry-after-ms."""
    key = emu.add_key()
    emu.script(key, [Fault.rate_limited(), Fault.rate_limited_ms(250)])
    status, headers, body = await fetch(http, emu, key)
    assert (status, headers["Retry-After"], json.loads(body)["error"]) == (429, "1", "rate_limited")
    status, headers, _ = await fetch(http, emu, key)
    assert (status, headers["retry-after-ms"]) == (429, "250")
    assert "Retry-After" not in headers
    assert emu.limit_rejections == 0


def test_fault_factories_reject_nonsense() -> None:
    """Fault factories refuse statuses, durations and dates that cannot be sent."""
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Fault.status(200)
    with pytest.raises(ValueError, match="3xx"):
        Fault.redirect("/x", status=200)
    with pytest.raises(ValueError, match="timezone-aware"):
        Fault.status(503, retry_after=dt.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="seconds"):
        Fault.delay(-1)
    assert Fault.drop() == Fault.drop()


async def test_drop_closes_the_connection_before_any_byte(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Fault.drop() makes the client see a disconnect instead of a response."""
    key = emu.add_key()
    # aiohttp itself resends an idempotent request once after a disconnect, so a GET
    # needs two drops to surface; a POST surfaces after one.
    emu.script(key, [Fault.drop(), Fault.drop(), Fault.drop()])
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await fetch(http, emu, key)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await fetch(http, emu, key, DISMISS, method="POST")
    assert [(r.fault, r.status) for r in emu.records] == [("drop", None)] * 3
    assert emu.profile(key)["pending_credit_notice"] is True
    status, _, _ = await fetch(http, emu, key)
    assert status == 200


@pytest.mark.parametrize("fault", [Fault.truncated(), Fault.reset_mid_body()], ids=lambda f: f.name)
async def test_cut_bodies_raise_payload_errors(
    emu: Emulator, http: aiohttp.ClientSession, fault: Fault
) -> None:
    """Truncated and reset-mid-body responses send a 200 whose body the client cannot finish."""
    key = emu.add_key()
    emu.script(key, [fault])
    async with http.get(emu.url + PROFILE, headers=auth(key)) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_stall_body_trips_a_read_timeout(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Fault.stall_body() sends headers then pauses long enough for a sock_read timeout."""
    key = emu.add_key()
    emu.script(key, [Fault.stall_body(30)])
    timeout = aiohttp.ClientTimeout(sock_read=0.1)
    async with http.get(emu.url + PROFILE, headers=auth(key), timeout=timeout) as resp:
        assert resp.status == 200
        with pytest.raises(asyncio.TimeoutError):
            await resp.read()


async def test_short_stall_still_delivers_the_whole_body(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """A stall shorter than the client's patience ends in the complete, valid body."""
    key = emu.add_key()
    emu.script(key, [Fault.stall_body(0.05)])
    status, _, body = await fetch(http, emu, key)
    assert status == 200
    assert json.loads(body) == {"user": emu.profile(key)}


async def test_html_empty_and_raw_body_faults(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Gateway HTML pages, empty bodies and raw bytes are sent exactly as scripted."""
    key = emu.add_key()
    emu.script(
        key,
        [Fault.html(), Fault.empty(), Fault.body(b'{"user": ', content_type="text/plain")],
    )
    status, headers, body = await fetch(http, emu, key)
    assert (status, headers["Content-Type"]) == (502, "text/html")
    assert b"<title>502 Bad Gateway</title>" in body
    status, _, body = await fetch(http, emu, key)
    assert (status, body) == (503, b"")
    status, headers, body = await fetch(http, emu, key)
    assert (status, headers["Content-Type"], body) == (200, "text/plain", b'{"user": ')


async def test_redirect_fault_sends_location(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """Fault.redirect() sends a 3xx with the Location header."""
    key = emu.add_key(fault=Fault.redirect("https://elsewhere.example/", status=307))
    status, headers, _ = await fetch(http, emu, key)
    assert (status, headers["Location"]) == (307, "https://elsewhere.example/")


async def test_large_body_is_exactly_n_bytes_of_valid_json(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Fault.large_body(n) sends n bytes that still parse to the key's profile."""
    key = emu.add_key(fault=Fault.large_body(200_000))
    status, _, body = await fetch(http, emu, key)
    assert (status, len(body)) == (200, 200_000)
    assert json.loads(body) == {"user": emu.profile(key)}


async def test_delay_fault_answers_normally_after_waiting(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Fault.delay() holds the response for the given time, then serves the profile."""
    key = emu.add_key()
    emu.script(key, [Fault.delay(0.1)])
    started = time.monotonic()
    status, _, _ = await fetch(http, emu, key)
    assert status == 200
    assert time.monotonic() - started >= 0.1
    assert emu.records[0].fault == "delay"


async def test_script_is_consumed_in_order_then_normal(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Scripted faults apply one per request of that key, in order, then service resumes."""
    key, other = emu.add_key(), emu.add_key()
    emu.script(key, [Fault.status(503), Fault.status(502)])
    assert (await fetch(http, emu, other))[0] == 200
    statuses = [(await fetch(http, emu, key))[0] for _ in range(4)]
    assert statuses == [503, 502, 200, 200]
    assert emu.attempts(key) == 4
    assert [r.fault for r in emu.records if r.status != 200 or r.fault] == ["status", "status"]


async def test_global_script_goes_first_and_to_any_key(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """The global queue is consumed by the next requests of any key, before a key's own queue."""
    key, other = emu.add_key(), emu.add_key()
    emu.script(key, [Fault.status(500)])
    emu.script(None, [Fault.status(502), Fault.status(503)])
    assert (await fetch(http, emu, other))[0] == 502
    assert (await fetch(http, emu, key))[0] == 503
    assert (await fetch(http, emu, key))[0] == 500
    assert (await fetch(http, emu, key))[0] == 200


async def test_sticky_fault_applies_to_every_request(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """A fault given to add_key() answers every request of that key and no other."""
    key = emu.add_key(fault=Fault.status(402))
    other = emu.add_key()
    assert [(await fetch(http, emu, key))[0] for _ in range(3)] == [402, 402, 402]
    assert (await fetch(http, emu, key, DISMISS, method="POST"))[0] == 402
    assert emu.profile(key)["pending_credit_notice"] is True
    assert (await fetch(http, emu, other))[0] == 200


# -- concurrency limit and accounting ---------------------------------------------------


async def test_per_key_limit_rejects_the_eleventh_concurrent_request(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """15 overlapping requests on one key: 10 are served, 5 get 429 with Retry-After: 1."""
    key = emu.add_key(latency=0.2)
    other = emu.add_key(latency=0.2)
    results = await asyncio.gather(
        *(fetch(http, emu, key) for _ in range(15)), fetch(http, emu, other)
    )
    *mine, (other_status, _, _) = results
    assert sorted(status for status, _, _ in mine) == [200] * 10 + [429] * 5
    rejected = [(headers, body) for status, headers, body in mine if status == 429]
    assert all(headers["Retry-After"] == "1" for headers, _ in rejected)
    assert all(
        json.loads(body)["message"] == "too many concurrent requests (max 10)"
        for _, body in rejected
    )
    assert other_status == 200
    assert emu.limit_rejections == 5
    assert emu.max_in_flight(key) == 10
    assert emu.max_in_flight(other) == 1
    assert emu.attempts(key) == 15


async def test_per_key_limit_none_disables_the_limit(http: aiohttp.ClientSession) -> None:
    """Emulator(per_key_limit=None) serves any number of overlapping requests."""
    async with Emulator(per_key_limit=None, latency=0.1) as emu:
        key = emu.add_key()
        statuses = await asyncio.gather(*(fetch(http, emu, key) for _ in range(15)))
        assert [status for status, _, _ in statuses] == [200] * 15
        assert emu.limit_rejections == 0
        assert emu.max_in_flight(key) == 15


async def test_records_hold_a_key_hint_but_never_the_key_or_authorization(
    emu: Emulator, http: aiohttp.ClientSession
) -> None:
    """Records keep method, path, status and headers, with only a hint of the key."""
    key = emu.add_key()
    await fetch(http, emu, key)
    await fetch(http, emu, "dpct_someone_elses_key_00000000")
    ok, denied = emu.records
    assert isinstance(ok, RequestRecord)
    assert (ok.method, ok.path, ok.status, ok.authorized) == ("GET", PROFILE, 200, True)
    assert ok.key_hint == f"{key[:5]}…{key[-4:]}"
    assert (denied.status, denied.authorized, denied.key_hint) == (401, False, "dpct_…0000")
    assert all("authorization" not in {h.lower() for h in r.headers} for r in emu.records)
    assert key not in repr(emu.records)
    assert ok.t_start <= denied.t_start


async def test_attempts_and_reset_stats(emu: Emulator, http: aiohttp.ClientSession) -> None:
    """attempts() counts every outcome per path, unknown keys only on request; reset clears it."""
    key = emu.add_key()
    emu.script(key, [Fault.status(500)])
    await fetch(http, emu, key)
    await fetch(http, emu, key)
    await fetch(http, emu, key, DISMISS, method="POST")
    unknown = "dpct_not_registered_000000000000"
    await fetch(http, emu, unknown)
    assert emu.attempts(key) == 2
    assert emu.attempts(key, DISMISS) == 1
    assert emu.attempts(key, None) == 3
    assert emu.attempts(unknown) == 0
    assert emu.attempts(unknown, include_unauthorized=True) == 1
    emu.reset_stats()
    assert (emu.attempts(key), emu.records, emu.max_in_flight(key)) == (0, [], 0)


# -- lifecycle -----------------------------------------------------------------------


async def test_close_is_quick_with_a_stalled_response(http: aiohttp.ClientSession) -> None:
    """Closing the emulator cuts a stalled response promptly; the client sees a broken body."""
    emu = Emulator()
    await emu.start()
    assert emu.url.startswith("http://127.0.0.1:")
    key = emu.add_key(fault=Fault.stall_body(30))
    async with http.get(emu.url + PROFILE, headers=auth(key)) as resp:
        started = time.monotonic()
        await emu.close()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    await emu.close()
    with pytest.raises(RuntimeError):
        _ = emu.url


# -- command line ----------------------------------------------------------------------


async def test_cli_serves_prints_keys_and_exits_cleanly_on_sigterm(
    http: aiohttp.ClientSession,
) -> None:
    """`python -m accountapi.testing --port 0` prints keys and its URL, serves, and exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accountapi.testing",
        "--port",
        "0",
        "--keys",
        "3",
        "--keys-file",
        "-",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(15):
            line = (await proc.stderr.readline()).decode()
            match = re.fullmatch(
                r"accountapi emulator listening on (http://127\.0\.0\.1:\d+)\n", line
            )
            assert match, line
            keys = [(await proc.stdout.readline()).decode().strip() for _ in range(3)]
            assert all(key.startswith("dpct_") for key in keys)
            async with http.get(match[1] + PROFILE, headers=auth(keys[0])) as resp:
                assert resp.status == 200
            proc.send_signal(signal.SIGTERM)
            rest, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert rest == b""


async def test_cli_keys_file_is_owner_only_even_if_it_existed(tmp_path: Path) -> None:
    """--keys-file writes the keys with mode 0600, tightening a file that was world-readable."""
    path = tmp_path / "keys.txt"
    path.write_text("old\n")
    path.chmod(0o644)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "accountapi.testing",
        "--port",
        "0",
        "--keys",
        "2",
        "--keys-file",
        str(path),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(15):
            assert b"listening on" in await proc.stderr.readline()
            proc.send_signal(signal.SIGTERM)
            await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert path.stat().st_mode & 0o777 == 0o600
    keys = path.read_text().split()
    assert len(keys) == 2
    assert all(k.startswith("dpct_") for k in keys)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--host", "10.1.2.3"], "--allow-remote"),
        (["--port", "70000"], "--port"),
        (["--keys", "many"], "--keys"),
    ],
)
def test_cli_rejects_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Bad arguments and a non-loopback host end in argparse's usage error, exit status 2."""
    with pytest.raises(SystemExit) as info:
        cli_main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
