"""The README's web-server example runs as written and answers 401 for any bad key."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from types import ModuleType

import aiohttp
import pytest
from aiohttp import web

from accountapi.testing import Emulator

README = Path(__file__).resolve().parent.parent / "README.md"


def _block_after(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = README.read_text()
    start = text.index(heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


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
    """No header, an empty, malformed or unknown key: 401; a good key: its exact balance."""
    good = emulator.add_key({"balance_eur": "12.345000"})
    monkeypatch.setenv("ACCOUNTAPI_BASE_URL", emulator.url)
    example = _load(_block_after("### In an aiohttp server"), "readme_aiohttp")
    assert "web.run_app(app" in _block_after("### In an aiohttp server")
    runner = web.AppRunner(example.app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            cases = {
                None: 401,
                "dpct_" + "u" * 32: 401,  # unknown to the service
                "not a key": 401,  # malformed: refused before any request
                "dpct_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9": 401,
            }
            for key, status in cases.items():
                headers = {} if key is None else {"X-Key": key.encode().decode("latin-1")}
                async with http.get("/balance", headers=headers) as answer:
                    assert answer.status == status, key
            async with http.get("/balance", headers={"X-Key": good}) as answer:
                assert answer.status == 200
                assert await answer.json() == {"balance_eur": "12.345000"}
    finally:
        await runner.cleanup()
