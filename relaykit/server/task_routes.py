"""Task API handlers: Midjourney-proxy (``/mj/...``), Suno (``/suno/...``,
``/v1/music/generations``) and video (``/v1/video/generations``, ``/v1/videos``).

Thin: authenticate, check the request (dialects.task_requests), call the task relay once,
answer in the API's own shape (dialects.tasks).  Each handler carries ``render_error`` so
the error middleware answers in that API's shape too: Midjourney's numeric ``code`` and
``description``, Suno's ``{"code", "message", "data": null}``; the video and music
endpoints use OpenAI's error envelope, which the openai SDK reads.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from aiohttp import web

from ..dialects import tasks as shapes
from ..dialects.task_requests import TaskRequest, mj_request, suno_request, video_request
from ..errors import InvalidRequest, RelayError
from ..relay.auth import Caller
from ..relay.tasks.base import Refused
from ..relay.tasks.runtime import TaskRuntime
from ..store.tasks import TaskRecord
from .body import read_json
from .openai_routes import authenticate
from .services import SERVICES, Services

TASKS: web.AppKey[TaskRuntime] = web.AppKey("relaykit.tasks", TaskRuntime)
Handler = Callable[[web.Request], Any]
MAX_LIST = 100


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json", headers=headers)


def _status(err: RelayError) -> int:
    return err.status if 400 <= err.status < 600 else 500


def mj_error(err: RelayError) -> web.Response:
    return _json(shapes.mj_error(_status(err), err.message), _status(err), dict(err.headers))


def suno_error(err: RelayError) -> web.Response:
    return _json(shapes.suno_error(err.code or err.kind, err.message), _status(err), dict(err.headers))


def renders(renderer: Callable[[RelayError], web.Response] | None) -> Callable[[Handler], Handler]:
    """Mark a handler with its error shape (read by server.middleware)."""
    def mark(fn: Handler) -> Handler:
        fn.dialect = "openai_chat"  # type: ignore[attr-defined]
        if renderer is not None:
            fn.render_error = renderer  # type: ignore[attr-defined]
        return fn
    return mark


def runtime(request: web.Request) -> TaskRuntime:
    return request.app[TASKS]


def _checked(make: Callable[[], TaskRequest]) -> TaskRequest:
    try:
        return make()
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


async def _submit(request: web.Request, caller: Caller, req: TaskRequest) -> Any:
    return await runtime(request).relay.submit(caller, req, request.remote or "")


async def _one(request: web.Request, caller: Caller, platforms: tuple[str, ...]) -> TaskRecord:
    return await runtime(request).relay.get(caller, request.match_info["id"], platforms)


def _ids(body: Any) -> list[str]:
    ids = body.get("ids") if isinstance(body, dict) else None
    if ids is None:
        return []
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InvalidRequest("The 'ids' field must be an array of task ids.")
    if len(ids) > MAX_LIST:
        raise InvalidRequest(f"At most {MAX_LIST} ids can be fetched at once.")
    return ids


async def _media(request: web.Request, rec: TaskRecord) -> web.StreamResponse:
    upstream = await runtime(request).relay.media(rec)
    try:
        out = web.StreamResponse(headers={"Content-Type": upstream.headers.get("Content-Type",
                                                                                 "application/octet-stream")})
        if upstream.content_length is not None:
            out.content_length = upstream.content_length
        await out.prepare(request)
        async for chunk in upstream.content.iter_chunked(64 * 1024):
            await out.write(chunk)
        await out.write_eof()
        return out
    finally:
        upstream.release()


# --------------------------------------------------------------------------- Midjourney

@renders(mj_error)
async def mj_submit(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    body = await read_json(request)
    req = _checked(lambda: mj_request(request.match_info["action"], body))
    try:
        done = await _submit(request, caller, req)
    except Refused as exc:
        if exc.vendor_code is None:
            raise
        return _json(shapes.mj_submit(exc.vendor_code, exc.message, None))  # HTTP 200, as the proxy does
    code = shapes.MJ_EXISTS if done.existing else done.accepted.code
    return _json(shapes.mj_submit(code, done.accepted.description, done.task.task_id))


@renders(mj_error)
async def mj_fetch(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    return _json(shapes.mj_task((await _one(request, caller, ("midjourney",))).view()))


@renders(mj_error)
async def mj_list(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    ids = _ids(await read_json(request))
    recs = await runtime(request).relay.many(caller, ids, ("midjourney",))
    return _json([shapes.mj_task(r.view()) for r in recs])


@renders(mj_error)
async def mj_image(request: web.Request) -> web.StreamResponse:
    _, caller = await authenticate(request)
    return await _media(request, await _one(request, caller, ("midjourney",)))


# --------------------------------------------------------------------------- Suno

@renders(suno_error)
async def suno_submit(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    body = await read_json(request)
    req = _checked(lambda: suno_request(request.match_info["action"], body))
    done = await _submit(request, caller, req)
    return _json(shapes.suno_ok(done.task.task_id))


@renders(suno_error)
async def suno_fetch_one(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    return _json(shapes.suno_ok(shapes.suno_task((await _one(request, caller, ("suno",))).view())))


@renders(suno_error)
async def suno_fetch(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    body = await read_json(request)
    ids = _ids(body)
    action = body.get("action") if isinstance(body, dict) else None
    recs = await runtime(request).relay.many(caller, ids, ("suno",))
    if isinstance(action, str) and action:
        recs = [r for r in recs if r.action == action.upper()]
    return _json(shapes.suno_ok([shapes.suno_task(r.view()) for r in recs]))


@renders(None)
async def music_create(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    body = await read_json(request)
    lyrics = isinstance(body, dict) and (str(body.get("action", "")).lower() == "lyrics"
                                         or body.get("model") == "suno_lyrics")
    req = _checked(lambda: suno_request("lyrics" if lyrics else "music", body))
    done = await _submit(request, caller, req)
    return _json(shapes.music_generation(done.task.view()))


@renders(None)
async def music_get(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    return _json(shapes.music_generation((await _one(request, caller, ("suno",))).view()))


# --------------------------------------------------------------------------- video

@renders(None)
async def video_create(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    body = await read_json(request)
    done = await _submit(request, caller, _checked(lambda: video_request(body)))
    return _json(shapes.video_generation(done.task.view()))


@renders(None)
async def video_get(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    return _json(shapes.video_generation((await _one(request, caller, ("video",))).view()))


async def _video_form(request: web.Request) -> dict[str, Any]:
    """OpenAI's ``POST /v1/videos`` body: the openai SDK sends multipart form data (an
    uploaded ``input_reference`` becomes a data URL); JSON is accepted too."""
    if not request.content_type.startswith(("multipart/", "application/x-www-form-urlencoded")):
        body = await read_json(request)
        if isinstance(body, dict) and isinstance(body.get("input_reference"), dict):
            body = {**body, "input_reference": body["input_reference"].get("image_url")}
        return body if isinstance(body, dict) else {}
    try:
        form = await request.post()
    except ValueError:
        raise InvalidRequest("The request body is not valid multipart form data.") from None
    out: dict[str, Any] = {}
    for name in ("prompt", "model", "seconds", "size"):
        v = form.get(name)
        if isinstance(v, str) and v:
            out[name] = v
    ref = form.get("input_reference")
    url = form.get("input_reference[image_url]")
    if isinstance(ref, web.FileField):
        ctype = ref.content_type or "image/png"
        out["input_reference"] = f"data:{ctype};base64,{base64.b64encode(ref.file.read()).decode()}"
    elif isinstance(url, str) and url:
        out["input_reference"] = url
    elif form.get("input_reference[file_id]"):
        raise InvalidRequest("input_reference by file_id is not supported; upload the image or give image_url.")
    return out


@renders(None)
async def videos_create(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    body = await _video_form(request)
    body.setdefault("model", "sora-2")
    done = await _submit(request, caller, _checked(lambda: video_request(body)))
    return _json(shapes.video_object(done.task.view()))


@renders(None)
async def videos_get(request: web.Request) -> web.Response:
    _, caller = await authenticate(request)
    return _json(shapes.video_object((await _one(request, caller, ("video",))).view()))


@renders(None)
async def videos_content(request: web.Request) -> web.StreamResponse:
    _, caller = await authenticate(request)
    return await _media(request, await _one(request, caller, ("video",)))


# --------------------------------------------------------------------------- wiring

MJ_ACTIONS = "imagine|change|simple-change|blend|describe|action"


def register(app: web.Application) -> None:
    """Routes, and the task runtime (made here, started by ``follow_tasks``)."""
    svc: Services = app[SERVICES]
    app[TASKS] = TaskRuntime(svc, clock=svc.pipeline.clock)
    r = app.router
    r.add_post(f"/mj/submit/{{action:{MJ_ACTIONS}}}", mj_submit)
    r.add_get("/mj/task/{id}/fetch", mj_fetch)
    r.add_post("/mj/task/list-by-condition", mj_list)
    r.add_get("/mj/image/{id}", mj_image)
    r.add_post("/suno/submit/{action:music|lyrics}", suno_submit)
    r.add_get("/suno/fetch/{id}", suno_fetch_one)
    r.add_post("/suno/fetch", suno_fetch)
    r.add_post("/v1/music/generations", music_create)
    r.add_get("/v1/music/generations/{id}", music_get)
    r.add_post("/v1/video/generations", video_create)
    r.add_get("/v1/video/generations/{id}", video_get)
    r.add_post("/v1/videos", videos_create)
    r.add_get("/v1/videos/{id}", videos_get)
    r.add_get("/v1/videos/{id}/content", videos_content)


async def follow_tasks(app: web.Application) -> AsyncIterator[None]:
    """Lifecycle: the poller runs while the app does (appended after the store's start,
    so it stops before the store does)."""
    tasks = app[TASKS]
    tasks.start()
    try:
        yield
    finally:
        await tasks.stop()
