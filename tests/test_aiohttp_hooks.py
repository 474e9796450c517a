"""The import-time check of the private aiohttp hooks (accountapi/_http/_aiohttp_private.py):
the installed aiohttp passes it, and a stand-in lacking any one hook is an ImportError that
names the hook and the version. A unit test of our check, with no aiohttp patched."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from accountapi._http._aiohttp_private import check_hooks


def _init_all(self: Any) -> None:
    self._factory = object()
    self._loop = object()


def _init_without_factory(self: Any) -> None:
    self._loop = object()


def _init_without_loop(self: Any) -> None:
    self._factory = object()


async def _connect(self: Any, req: object, traces: object, timeout: object) -> None:
    pass


async def _connect_renamed(self: Any, request: object, traces: object, timeout: object) -> None:
    pass


def _stand_in(*, without: str = "") -> Any:
    """An object shaped like the parts of aiohttp the hooks use, less the one named."""
    inits = {"_factory": _init_without_factory, "_loop": _init_without_loop}
    base = type("BaseConnector", (), {"__init__": inits.get(without, _init_all)})
    connect = _connect_renamed if without == "connect" else _connect
    connector = type("TCPConnector", (base,), {"connect": connect})
    attrs = frozenset() if without == "_retry_connection" else frozenset({"_retry_connection"})
    session = type("ClientSession", (), {"ATTRS": attrs})
    handler = type("ResponseHandler", (), {} if without == "_parser" else {"_parser": None})
    return SimpleNamespace(
        __version__="9.9.9",
        TCPConnector=connector,
        ClientSession=session,
        client_proto=SimpleNamespace(ResponseHandler=handler),
    )


def test_the_installed_aiohttp_has_every_hook() -> None:
    """The aiohttp this runs on (the newest, or the floor in .ci/run) passes the check."""
    check_hooks(aiohttp)


def test_a_complete_stand_in_passes() -> None:
    """The stand-in with every hook passes, so the cases below fail for the one left out."""
    check_hooks(_stand_in())


@pytest.mark.parametrize(
    ("without", "named"),
    [
        ("_factory", "TCPConnector._factory"),
        ("_loop", "TCPConnector._loop"),
        ("connect", "TCPConnector.connect(req, traces, timeout)"),
        ("_retry_connection", "ClientSession._retry_connection"),
        ("_parser", "client_proto.ResponseHandler._parser"),
    ],
)
def test_a_missing_hook_is_an_import_error_naming_it_and_the_version(
    without: str, named: str
) -> None:
    """Each hook missing in turn: ImportError with the hook's name and aiohttp's version."""
    with pytest.raises(ImportError) as raised:
        check_hooks(_stand_in(without=without))
    message = str(raised.value)
    assert named in message
    assert "aiohttp 9.9.9" in message
