"""Turning pipeline results and errors into HTTP responses, in the client's dialect."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..dialects import openai_chat
from ..dialects.registry import dialect as dialect_module
from ..errors import RelayError
from ..relay.pipeline import JsonReply, StreamReply

DIALECT_KEY: web.RequestKey[str] = web.RequestKey("relaykit.dialect", str)


def error_response(dialect: str, err: RelayError) -> web.Response:
    status, body, headers = error_parts(dialect, err)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def error_parts(dialect: str, err: RelayError) -> tuple[int, bytes, dict[str, str]]:
    """Status, JSON body and extra headers of ``err`` in ``dialect`` (Content-Type aside)."""
    status = err.status if 400 <= err.status < 600 else 500
    body = error_body(dialect, status, err.message, err.kind, err.code)
    headers = dict(err.headers)
    if status >= 500 or status == 402:
        headers.setdefault("x-should-retry", "false" if status in (402, 501) else "true")
    return status, orjson.dumps(body), headers


def error_body(dialect: str, status: int, message: str, kind: str, code: str | None) -> dict[str, Any]:
    if dialect == openai_chat.NAME:
        return openai_chat.error_body(status, message, kind, code)
    module = dialect_module(dialect)
    return dict(module.error_body(status, message, kind))


async def send(request: web.Request, reply: JsonReply | StreamReply) -> web.StreamResponse:
    if isinstance(reply, JsonReply):
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
    resp = web.StreamResponse(status=200, headers=reply.headers)
    chunks = reply.chunks
    try:
        await resp.prepare(request)
        async for chunk in chunks:
            await resp.write(chunk)
        await resp.write_eof()
    except ConnectionError:
        pass  # the client went away; closing the generator below stops the upstream and bills
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return resp
