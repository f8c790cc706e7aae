"""OpenAI-dialect handlers: chat completions and the model list.  Thin: parse, call the
pipeline, render."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..dialects import openai_chat
from ..errors import InvalidRequest
from ..relay.auth import Caller, extract_key
from ..relay.pipeline import ChatCall
from .body import read_json
from .render import send
from .services import Services, services


def dialect(name: str) -> Any:
    def mark(fn: Any) -> Any:
        fn.dialect = name
        return fn
    return mark


async def authenticate(request: web.Request) -> tuple[Services, Caller]:
    svc = services(request)
    # the query is parsed only when there is one (Gemini clients may put the key there)
    query = request.query if request.query_string else {}
    caller = await svc.auth.authenticate(extract_key(request.headers, query), request.remote)
    return svc, caller


@dialect(openai_chat.NAME)
async def chat_completions(request: web.Request) -> web.StreamResponse:
    svc, caller = await authenticate(request)
    body = await read_json(request)
    call = chat_call(body, caller, request.remote or "", await request.read(), lower_headers(request),
                     dict(request.query))
    return await send(request, await svc.pipeline.chat(call))


def chat_call(body: Any, caller: Caller, ip: str, raw: bytes, headers: dict[str, str],
              query: dict[str, str]) -> ChatCall:
    """The checks and the call of a chat completion (also the fast lane's: server/fastlane.py)."""
    problem = openai_chat.validate_request(body)
    if problem:
        raise InvalidRequest(problem)
    return ChatCall(openai_chat.NAME, body, body["model"], bool(body.get("stream", False)), caller, ip,
                    include_usage=openai_chat.wants_usage(body), raw=raw, headers=headers)


def lower_headers(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def models_for(svc: Services, caller: Caller) -> list[str]:
    """Exactly the models this token may use: served in its group, priced, allowed."""
    names = [m for m in svc.router.models_for(caller.group) if m in svc.settings.prices]
    if caller.token.models:
        names = [m for m in names if m in caller.token.models]
    return names


async def root(request: web.Request) -> web.Response:
    """Coding agents probe the root without a key; answer kindly and reveal nothing."""
    return web.json_response({"name": "relaykit", "status": "ok"})
