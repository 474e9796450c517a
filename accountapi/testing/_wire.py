"""What the emulator writes on the wire: the service's error shapes, the gateway's pages,
and the broken answers its faults send instead of the service's."""

from __future__ import annotations

import asyncio
import http
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from aiohttp import web

from ._accounts import KeyState, profile_body
from ._faults import Fault, error_code

__all__ = [
    "Exchange",
    "bearer_token",
    "broken_body",
    "chunked_body",
    "client_port",
    "error_response",
    "fault_answer",
    "nginx_page",
    "padded",
    "reason",
]


@attrs.define
class Exchange:
    """What the handler has committed to so far, for the request's record."""

    status: int | None = None
    fault: str | None = None


async def fault_answer(
    fault: Fault,
    request: web.Request,
    state: KeyState,
    request_id: str,
    exchange: Exchange,
    route: Callable[[web.Request, KeyState, str], web.Response],
) -> web.StreamResponse:
    """Answer with `fault` instead of the service; only `delay` lets the service (``route``) run."""
    rid = {"X-Request-Id": request_id}
    code = fault.code if fault.code is not None else 200
    match fault.name:
        case "delay":
            await asyncio.sleep(fault.seconds or 0.0)
            return route(request, state, request_id)
        case "status" | "rate_limited" | "rate_limited_ms":
            return error_response(
                code,
                fault.error or error_code(code),
                fault.message or reason(code),
                request_id,
                details=fault.details,
                headers=dict(fault.headers),
            )
        case "html":
            return web.Response(
                status=code,
                body=nginx_page(code),
                headers={**rid, "Content-Type": "text/html"},
            )
        case "empty":
            return web.Response(status=code, body=b"", headers=rid)
        case "body":
            headers = dict(rid)
            if fault.content_type is not None:
                headers["Content-Type"] = fault.content_type
            return web.Response(status=code, body=fault.data or b"", headers=headers)
        case "redirect":
            return web.Response(status=code, headers={**rid, "Location": fault.location or "/"})
        case "large_body" if fault.chunked:
            return await chunked_body(request, padded(profile_body(state), fault.n_bytes or 0), rid)
        case "large_body":
            return web.Response(
                body=padded(profile_body(state), fault.n_bytes or 0),
                content_type="application/json",
                headers=rid,
            )
        case "drop":
            await request.read()
            if request.transport is not None:
                request.transport.abort()
            # aiohttp's attempt to send this meets the closed transport and gives up
            # quietly (it treats that as a client disconnect).
            return web.Response(status=code)
        case "truncated" | "reset_mid_body" | "stall_body":
            exchange.status = code
            return await broken_body(fault, request, profile_body(state), rid)
        case _:
            raise ValueError(f"the emulator does not know fault {fault.name!r}")


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def nginx_page(status: int) -> bytes:
    """The error page nginx serves when the upstream fails, byte for byte in shape."""
    title = f"{status} {reason(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


async def broken_body(
    fault: Fault, request: web.Request, body: bytes, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Send a 200 whose body is cut off (truncated, reset) or paused (stalled)."""
    resp = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
    resp.force_close()
    if fault.name == "reset_mid_body":
        resp.enable_chunked_encoding()
    else:
        resp.content_length = len(body)
    half = len(body) // 2
    try:
        await resp.prepare(request)
        await resp.write(body[:half])
        if fault.name == "stall_body":
            await asyncio.sleep(fault.seconds or 0.0)
            await resp.write(body[half:])
            await resp.write_eof()
        elif request.transport is not None:
            # close() rather than abort(): the half already written must reach the client.
            request.transport.close()
    except ConnectionError:
        pass  # the client went away first; aiohttp finishes quietly with the closed transport
    return resp


async def chunked_body(
    request: web.Request, body: bytes, headers: Mapping[str, str]
) -> web.StreamResponse:
    """Send a 200 body with chunked encoding, so its size is unknown until the end."""
    resp = web.StreamResponse(status=200, headers={**headers, "Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    try:
        await resp.prepare(request)
        for start in range(0, len(body), 65536):
            await resp.write(body[start : start + 65536])
        await resp.write_eof()
    except ConnectionError:
        pass  # the client stopped reading (e.g. over its size cap) and closed the connection
    return resp


def error_response(
    status: int,
    error: str,
    message: str,
    request_id: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON error in the service's shape, with the request id in body and header."""
    payload: dict[str, Any] = {"error": error, "message": message}
    if details is not None:
        payload["details"] = details
    payload["request_id"] = request_id
    return web.json_response(
        payload, status=status, headers={**(headers or {}), "X-Request-Id": request_id}
    )


def padded(body: bytes, n_bytes: int) -> bytes:
    """Pad a JSON object with whitespace before its closing brace to reach `n_bytes`."""
    missing = n_bytes - len(body)
    if missing <= 0:
        return body
    return body[:-1] + b" " * missing + body[-1:]


def client_port(request: web.Request) -> int | None:
    transport = request.transport
    peer = None if transport is None else transport.get_extra_info("peername")
    return peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None


def bearer_token(header: str | None) -> str | None:
    """The key in `Bearer <key>`, or None when the header is missing or malformed."""
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
        return None
    return token
