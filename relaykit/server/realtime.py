"""``GET /v1/realtime?model=`` (WebSocket): the relay between a client's socket and the
upstream's.

Before the upgrade, everything that can be refused is refused as plain HTTP in OpenAI's
error shape (bad key, unknown or unpriced model, no balance for the first response, no
upstream): the SDKs surface a failed handshake as an exception.  After it, frames pass
through untouched in both directions; ``response.done`` events are billed as they pass
(``relay.unary.Tab``), and a session whose next hold cannot be placed gets an ``error``
event and is closed.  When either side closes, the other is closed with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import aiohttp
from aiohttp import WSMsgType, web

from ..dialects import openai_chat
from ..dialects import realtime as rt
from ..errors import InvalidRequest, RelayError
from ..relay.auth import extract_key
from ..relay.channels import ops
from ..relay.unary import Tab, UnaryPipeline, open_realtime
from .openai_routes import dialect
from .services import services

log = logging.getLogger("relaykit.server")
UNARY: web.AppKey[UnaryPipeline] = web.AppKey("relaykit.unary", UnaryPipeline)
MAX_FRAME = 32 * 1024 * 1024
FORWARDED_HEADERS = ("openai-beta",)


@dialect(openai_chat.NAME)
async def session(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    unary = request.app[UNARY]
    key = extract_key(request.headers, request.query) or rt.key_from_protocols(
        request.headers.get("Sec-WebSocket-Protocol"))
    caller = await svc.auth.authenticate(key, request.remote)
    model = request.query.get("model", "")
    if not model:
        raise InvalidRequest("The 'model' query parameter is required: /v1/realtime?model=...")
    plan, price, group_ratio = unary.route(ops.REALTIME, model, caller, frozenset({"token"}))
    lease = unary.chat.limiter.admit(caller)
    tab = Tab(unary, caller, model, price, group_ratio, lease, request.remote or "")
    try:
        await tab.open()
    except BaseException:
        lease.release()
        raise
    try:
        headers = {h: request.headers[h] for h in FORWARDED_HEADERS if h in request.headers}
        upstream = await open_realtime(unary, plan, model, headers, tab)
    except BaseException:
        await tab.close(status=502, error="no upstream realtime session")
        raise
    client = web.WebSocketResponse(protocols=(rt.SUBPROTOCOL,), max_msg_size=MAX_FRAME, autoping=True)
    try:
        await client.prepare(request)
        await _relay(client, upstream, tab)
    finally:
        await upstream.close()
        await tab.close()
    return client


async def _relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse, tab: Tab) -> None:
    to_up = asyncio.create_task(_client_to_upstream(client, upstream))
    to_client = asyncio.create_task(_upstream_to_client(upstream, client, tab))
    done, pending = await asyncio.wait({to_up, to_client}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failure = next((t.exception() for t in done if not t.cancelled() and t.exception() is not None), None)
    if isinstance(failure, RelayError):  # the next hold was refused: balance spent, account disabled...
        code = failure.code or failure.kind
        with contextlib.suppress(ConnectionError, RuntimeError):
            await client.send_str(rt.error_event(failure.message, code=code, kind=failure.kind,
                                                 event_id="event_" + uuid.uuid4().hex))
        await client.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION, message=code.encode()[:120])
        return
    if failure is not None:
        log.error("realtime session relay failed: %r", failure)
        await client.close(code=aiohttp.WSCloseCode.INTERNAL_ERROR, message=b"relay error")
        return
    if to_client in done:  # the upstream closed: so does the client, with the upstream's code
        await client.close(code=_code(upstream.close_code), message=b"upstream closed")


async def _client_to_upstream(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    async for msg in client:
        if msg.type == WSMsgType.TEXT:
            await upstream.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await upstream.send_bytes(msg.data)
        else:
            break
    await upstream.close(code=_code(client.close_code))


async def _upstream_to_client(upstream: aiohttp.ClientWebSocketResponse, client: web.WebSocketResponse,
                              tab: Tab) -> None:
    async for msg in upstream:
        if msg.type == WSMsgType.TEXT:
            await client.send_str(msg.data)  # the event first, then its bill
            ev = rt.event_of(msg.data)
            if ev is None:
                continue
            if ev.get("type") == "response.done":
                usage = rt.usage_of(ev)
                if usage is not None:
                    await asyncio.shield(tab.charge(usage))
            else:
                tab.delivered.append(rt.delta_text(ev))
        elif msg.type == WSMsgType.BINARY:
            await client.send_bytes(msg.data)
        else:
            break


def _code(code: int | None) -> int:
    """A close code that may be sent on (1005/1006 are reserved for "none received")."""
    if code is None or code in (1005, 1006) or not (1000 <= code < 5000):
        return aiohttp.WSCloseCode.OK
    return code
