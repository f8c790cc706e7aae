"""Anthropic, Gemini and OpenAI Responses ingress, and the model lists in each shape.

Thin handlers: authenticate, read just what routing needs (model, stream), hand a
ChatCall to the pipeline, render.  Each handler is marked with its dialect so errors,
including authentication errors, come back in the format that client's SDK parses.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..dialects import anthropic, gemini, openai_chat, openai_responses
from ..errors import InvalidRequest, ModelNotFound, NotFoundError
from ..relay.auth import Caller, check_model
from ..relay.meter import IMAGE_TOKENS, MESSAGE_OVERHEAD, estimate_tokens
from ..relay.pipeline import ChatCall
from .body import read_json
from .openai_routes import authenticate, dialect, lower_headers, models_for
from .render import DIALECT_KEY, send


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")


def _require_model(body: Any) -> str:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("The 'model' field is required and must be a string.")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("The 'stream' field must be true or false.")
    return model


def _estimate(hub: dict[str, Any]) -> int:
    text, images = openai_chat.prompt_text(hub)
    return estimate_tokens(text) + images * IMAGE_TOKENS + MESSAGE_OVERHEAD * len(hub.get("messages") or ())


def _to_hub(module: Any, body: dict[str, Any], model: str) -> dict[str, Any]:
    try:
        return dict(module.request_to_hub(body, model=model))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


# --------------------------------------------------------------------------- Anthropic

@dialect("anthropic")
async def messages(request: web.Request) -> web.StreamResponse:
    svc, caller = await authenticate(request)
    body = await read_json(request)
    call = messages_call(body, caller, request.remote or "", await request.read(), lower_headers(request),
                         dict(request.query))
    return await send(request, await svc.pipeline.chat(call))


def messages_call(body: Any, caller: Caller, ip: str, raw: bytes, headers: dict[str, str],
                  query: dict[str, str]) -> ChatCall:
    """The checks and the call of an Anthropic message (also the fast lane's)."""
    model = _require_model(body)
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("The 'messages' field is required and must be an array.")
    mt = body.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
        raise InvalidRequest("The 'max_tokens' field must be a positive integer.")
    return ChatCall("anthropic", body, model, bool(body.get("stream", False)), caller, ip, raw=raw,
                    headers=headers, query=query)


@dialect("anthropic")
async def count_tokens(request: web.Request) -> web.Response:
    """An estimate (relaykit's counting rule), without calling or billing an upstream."""
    svc, caller = await authenticate(request)
    body = await read_json(request)
    model = _require_model(body)
    _check_model_known(svc, caller, model)
    return _json(anthropic.count_tokens_response(_estimate(_to_hub(anthropic, body, model))))


# --------------------------------------------------------------------------- OpenAI Responses
# Errors before a stream starts use the OpenAI envelope with the error's own code, exactly
# as chat does (same SDK, same exception classes and ``.code``: ``model_not_found`` ...),
# hence the chat dialect mark; the pipeline still serves these calls as Responses.

@dialect(openai_chat.NAME)
async def responses(request: web.Request) -> web.StreamResponse:
    svc, caller = await authenticate(request)
    body = await read_json(request)
    call = responses_call(body, caller, request.remote or "", await request.read(), lower_headers(request),
                          dict(request.query))
    return await send(request, await svc.pipeline.chat(call))


def responses_call(body: Any, caller: Caller, ip: str, raw: bytes, headers: dict[str, str],
                   query: dict[str, str]) -> ChatCall:
    """The checks and the call of an OpenAI Responses request (also the fast lane's)."""
    model = _require_model(body)
    if "input" not in body and "instructions" not in body:
        raise InvalidRequest("The 'input' field is required.")
    return ChatCall("openai_responses", body, model, bool(body.get("stream", False)), caller, ip, raw=raw,
                    headers=headers)


@dialect(openai_chat.NAME)
async def responses_input_tokens(request: web.Request) -> web.Response:
    svc, caller = await authenticate(request)
    body = await read_json(request)
    model = _require_model(body)
    _check_model_known(svc, caller, model)
    return _json(openai_responses.count_tokens_response(_estimate(_to_hub(openai_responses, body, model))))


# --------------------------------------------------------------------------- Gemini

GEMINI_ACTIONS = ("generateContent", "streamGenerateContent", "countTokens")


@dialect("gemini")
async def gemini_action(request: web.Request) -> web.StreamResponse:
    svc, caller = await authenticate(request)
    target = request.match_info["target"]
    model, sep, action = target.rpartition(":")
    model = model.removeprefix("models/")
    if not sep or not model or action not in GEMINI_ACTIONS:
        raise NotFoundError(f"There is no Gemini method '{target}'; relaykit serves "
                            f"{', '.join(GEMINI_ACTIONS)}.", code="unknown_method")
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if action == "countTokens":
        _check_model_known(svc, caller, model)
        inner = body.get("generateContentRequest") if isinstance(body.get("generateContentRequest"), dict) else body
        return _json(gemini.count_tokens_response(_estimate(_to_hub(gemini, inner, model))))
    if not isinstance(body.get("contents"), list):
        raise InvalidRequest("The 'contents' field is required and must be an array.")
    call = ChatCall("gemini", body, model, action == "streamGenerateContent", caller, request.remote or "",
                    raw=await request.read(), headers=lower_headers(request))
    return await send(request, await svc.pipeline.chat(call))


def _check_model_known(svc: Any, caller: Caller, model: str) -> None:
    if model not in models_for(svc, caller):
        if caller.token.models and model not in caller.token.models:
            check_model(caller, model)
        raise ModelNotFound(f"The model '{model}' does not exist or is not served by this relay.")


# --------------------------------------------------------------------------- model lists

def list_shape(request: web.Request) -> str:
    """Three SDKs read GET /v1/models; the caller's headers say which shape it parses."""
    if "x-goog-api-key" in request.headers or "key" in request.query:
        return "gemini"
    if "anthropic-version" in request.headers:
        return "anthropic"
    return openai_chat.NAME


def gemini_model(name: str) -> dict[str, Any]:
    return {"name": f"models/{name}", "baseModelId": name, "version": "relaykit", "displayName": name,
            "description": f"{name} via relaykit", "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}


def anthropic_model(name: str) -> dict[str, Any]:
    return {"type": "model", "id": name, "display_name": name, "created_at": "2024-01-01T00:00:00Z"}


def openai_model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "relaykit"}


async def list_models(request: web.Request) -> web.Response:
    shape = list_shape(request)
    request[DIALECT_KEY] = shape
    svc, caller = await authenticate(request)
    names = models_for(svc, caller)
    if shape == "gemini":
        return _json({"models": [gemini_model(n) for n in names]})
    if shape == "anthropic":
        return _json({"data": [anthropic_model(n) for n in names], "has_more": False,
                      "first_id": names[0] if names else None, "last_id": names[-1] if names else None})
    return _json({"object": "list", "data": [openai_model(n) for n in names]})


async def get_model(request: web.Request) -> web.Response:
    shape = list_shape(request)
    request[DIALECT_KEY] = shape
    svc, caller = await authenticate(request)
    name = request.match_info.get("model") or request.match_info.get("target", "")
    name = name.removeprefix("models/")
    if name not in models_for(svc, caller):
        raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.")
    build = {"gemini": gemini_model, "anthropic": anthropic_model}.get(shape, openai_model)
    return _json(build(name))


@dialect("gemini")
async def gemini_list_models(request: web.Request) -> web.Response:
    svc, caller = await authenticate(request)
    return _json({"models": [gemini_model(n) for n in models_for(svc, caller)]})


@dialect("gemini")
async def gemini_get_model(request: web.Request) -> web.Response:
    request[DIALECT_KEY] = "gemini"
    return await get_model(request)
