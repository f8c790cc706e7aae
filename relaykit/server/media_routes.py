"""Embeddings, rerank, images and audio endpoints, and Gemini's embedding methods.

Thin handlers: authenticate, read what routing and billing need, hand an operation to
the unary pipeline, render.  Each handler is marked with the dialect its errors take:
OpenAI's envelope for the OpenAI paths, Gemini's for the Gemini methods, and for rerank
a body Cohere's SDK (``message``) and Jina / Xinference clients (``detail``) all read.
Multipart uploads are piped to the upstream as they arrive (``multipart.Upload``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..dialects import audio, embeddings, images, openai_chat, rerank
from ..errors import InvalidRequest, NotFoundError
from ..relay import media_ops
from ..relay.channels import ops
from ..relay.auth import Caller
from ..relay.unary import Operation, UnaryPipeline
from . import realtime, vendor_routes
from .realtime import UNARY
from .body import read_json
from .multipart import Upload
from .openai_routes import authenticate, dialect
from .render import send
from .services import SERVICES

MB = 1024 * 1024


def register(app: web.Application) -> None:
    app[UNARY] = UnaryPipeline(app[SERVICES].pipeline)
    r = app.router
    r.add_post("/v1/embeddings", create_embeddings)
    r.add_post("/v1/rerank", rerank_v1)
    r.add_post("/v2/rerank", rerank_v2)
    r.add_post("/v1/images/generations", images_generations)
    r.add_post("/v1/images/edits", images_edits)
    r.add_post("/v1/audio/transcriptions", audio_transcriptions)
    r.add_post("/v1/audio/translations", audio_translations)
    r.add_post("/v1/audio/speech", audio_speech)
    r.add_get("/v1/realtime", realtime.session)


def _valid(parse: Any, *args: Any, **kw: Any) -> Any:
    try:
        return parse(*args, **kw)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


async def _run(request: web.Request, caller: Caller, op: Operation) -> web.StreamResponse:
    reply = await request.app[UNARY].run(op, caller, client_ip=request.remote or "")
    return await send(request, reply)


def _max_bytes(request: web.Request) -> int:
    return int(request.app[SERVICES].settings.server.max_body_mb * MB)


# --------------------------------------------------------------------------- embeddings

@dialect(openai_chat.NAME)
async def create_embeddings(request: web.Request) -> web.StreamResponse:
    _, caller = await authenticate(request)  # a bad key is refused before the body is read
    body = await read_json(request)
    req = _valid(embeddings.parse_openai, body)
    return await _run(request, caller, media_ops.Embeddings(req, await request.read()))


@dialect("gemini")
async def gemini_action(request: web.Request) -> web.StreamResponse:
    """``/v1beta/models/{model}:{method}`` (and ``/v1/...``): the embedding methods here,
    every other method in vendor_routes."""
    model, _, action = request.match_info["target"].rpartition(":")
    if action not in embeddings.GEMINI_ACTIONS:
        chat: web.StreamResponse = await vendor_routes.gemini_action(request)
        return chat
    model = model.removeprefix("models/")
    if not model:
        raise NotFoundError(f"There is no Gemini method '{request.match_info['target']}'.", code="unknown_method")
    _, caller = await authenticate(request)
    body = await read_json(request)
    req = _valid(embeddings.parse_gemini, body, action, model)
    return await _run(request, caller, media_ops.Embeddings(req))


# --------------------------------------------------------------------------- rerank

async def _rerank(request: web.Request, *, v2: bool) -> web.StreamResponse:
    _, caller = await authenticate(request)
    body = await read_json(request)
    shape = rerank.detect_shape(body if isinstance(body, dict) else {}, request.headers, v2=v2)
    return await _run(request, caller, media_ops.Rerank(_valid(rerank.parse, body, shape)))


@dialect(rerank.NAME)
async def rerank_v1(request: web.Request) -> web.StreamResponse:
    return await _rerank(request, v2=False)


@dialect(rerank.NAME)
async def rerank_v2(request: web.Request) -> web.StreamResponse:
    return await _rerank(request, v2=True)


# --------------------------------------------------------------------------- images

@dialect(openai_chat.NAME)
async def images_generations(request: web.Request) -> web.StreamResponse:
    _, caller = await authenticate(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    req = _valid(images.parse, body)
    return await _run(request, caller, media_ops.ImageGeneration(req, await request.read()))


@dialect(openai_chat.NAME)
async def images_edits(request: web.Request) -> web.StreamResponse:
    _, caller = await authenticate(request)
    upload = await Upload.open(request, max_bytes=_max_bytes(request))
    try:
        req = _valid(images.parse, await upload.read_fields("model"), edit=True)
        return await _run(request, caller, media_ops.ImageEdit(req, upload))
    finally:
        upload.close()


# --------------------------------------------------------------------------- audio

async def _transcribe(request: web.Request, op: str) -> web.StreamResponse:
    _, caller = await authenticate(request)
    limit = _max_bytes(request)
    upload = await Upload.open(request, max_bytes=limit)
    try:
        model, _ = _valid(audio.parse_transcription_fields, await upload.read_fields("model"))
        declared = min(request.content_length or limit, limit)
        return await _run(request, caller, media_ops.Transcription(op, model, upload, declared_bytes=declared))
    finally:
        upload.close()


@dialect(openai_chat.NAME)
async def audio_transcriptions(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, ops.TRANSCRIPTIONS)


@dialect(openai_chat.NAME)
async def audio_translations(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, ops.TRANSLATIONS)


@dialect(openai_chat.NAME)
async def audio_speech(request: web.Request) -> web.StreamResponse:
    _, caller = await authenticate(request)
    body = await read_json(request)
    req = _valid(audio.parse_speech, body)
    return await _run(request, caller, media_ops.Speech(req, await request.read()))
