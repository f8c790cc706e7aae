"""The fake vendors: a midjourney-proxy, a Suno API service, Kling, Jimeng (Volcengine
signing checked independently of relaykit's code) and OpenAI videos."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from typing import Any

from aiohttp import web

from .base import FORM, FakeTask, FakeTaskServer

PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"
MP4 = b"\x00\x00\x00\x18ftypmp42fake-video-bytes"


class FakeMidjourney(FakeTaskServer):
    """``refuse`` entries are Midjourney codes (23 queue full, 24 banned prompt)."""

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/mj/submit/{action}", self._submit)
        r.add_get("/mj/task/{id}/fetch", self._fetch)
        r.add_get("/cdn/{name}", self._image)

    async def _submit(self, request: web.Request) -> web.Response:
        if request.headers.get("mj-api-secret") != self.key:
            return web.json_response({"code": 4, "description": "bad secret"}, status=401)
        body = await request.json()
        if self.refuse:
            code = self.refuse.pop(0)
            return web.json_response({"code": code, "description": {23: "queue full", 24: "Banned prompt"}.get(
                code, "refused"), "result": None})
        action = request.match_info["action"]
        if action in ("change", "action") and body.get("taskId") not in self.tasks:
            return web.json_response({"code": 3, "description": "task not found", "result": None})
        kind = {"change": body.get("action", "CHANGE"), "action": "ACTION"}.get(action, action.upper())
        task = self.new_task(kind, body, f"{int(time.time() * 1000)}{random.randint(100, 999)}")
        return web.json_response({"code": 1, "description": "Submit success", "result": task.id,
                                  "properties": {"discordInstanceId": "1"}})

    async def _fetch(self, request: web.Request) -> web.Response:
        if request.headers.get("mj-api-secret") != self.key:
            return web.json_response({"code": 4, "description": "bad secret"}, status=401)
        task = self.tasks.get(request.match_info["id"])
        if task is None:
            return web.json_response({"code": 3, "description": "not found"}, status=404)
        state = self.advance(task)
        out: dict[str, Any] = {"id": task.id, "action": task.kind, "prompt": task.body.get("prompt", ""),
                               "promptEn": task.body.get("prompt", ""), "status": "IN_PROGRESS", "progress": "50%",
                               "submitTime": 1, "failReason": ""}
        if state == "success":
            out.update(status="SUCCESS", progress="100%", imageUrl=f"{self.url}/cdn/{task.id}.png",
                       buttons=[{"customId": f"MJ::JOB::upsample::{i}::{task.id}", "emoji": "", "label": f"U{i}",
                                 "type": 2, "style": 2} for i in range(1, 5)])
        elif state == "failure":
            out.update(status="FAILURE", progress="0%", failReason="Discord said no")
        return web.json_response(out)

    async def _image(self, request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")


class FakeSuno(FakeTaskServer):
    """``refuse`` entries are messages: the submit answers ``code: "error"`` with it."""

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/suno/submit/{action}", self._submit)
        r.add_post("/suno/fetch", self._fetch)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.key}"

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"code": "unauthorized", "message": "bad key"}, status=401)
        body = await request.json()
        if self.refuse:
            return web.json_response({"code": "error", "message": self.refuse.pop(0), "data": None})
        task = self.new_task(request.match_info["action"].upper(), body)
        return web.json_response({"code": "success", "message": "", "data": task.id})

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"code": "unauthorized", "message": "bad key"}, status=401)
        body = await request.json()
        out = []
        for tid in body.get("ids", []):
            task = self.tasks.get(tid)
            if task is None:
                continue
            state = self.advance(task)
            item: dict[str, Any] = {"task_id": task.id, "action": task.kind, "status": "IN_PROGRESS",
                                    "progress": "40%", "fail_reason": "", "data": None}
            if state == "success":
                clip = {"id": "clip-" + task.id[:8], "title": task.body.get("title", "Song"), "status": "complete",
                        "audio_url": f"{self.url}/audio/{task.id}.mp3", "model_name": task.body.get("mv", ""),
                        "metadata": {"duration": 200, "prompt": task.body.get("prompt", "")}}
                item.update(status="SUCCESS", progress="100%",
                            data={"id": "lyr", "text": "la la", "title": "T", "status": "complete"}
                            if task.kind == "LYRICS" else [clip])
            elif state == "failure":
                item.update(status="FAILURE", fail_reason="the song could not be made")
            out.append(item)
        return web.json_response({"code": "success", "message": "", "data": out})


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class FakeKling(FakeTaskServer):
    """Keys are ``ACCESS|SECRET``; every request must carry a valid HS256 JWT."""

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/videos/{kind}", self._submit)
        r.add_get("/v1/videos/{kind}/{id}", self._fetch)
        r.add_get("/files/{name}", self._file)

    def _authorized(self, request: web.Request) -> bool:
        access, _, secret = self.key.partition("|")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            header, payload, signature = token.split(".")
        except ValueError:
            return False
        expected = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
        claims = json.loads(_b64url_decode(payload))
        return (hmac.compare_digest(expected, _b64url_decode(signature)) and claims.get("iss") == access
                and claims.get("exp", 0) > time.time() and json.loads(_b64url_decode(header))["alg"] == "HS256")

    async def _submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"code": 1004, "message": "auth failed"}, status=401)
        body = await request.json()
        if self.refuse:
            return web.json_response({"code": self.refuse.pop(0), "message": "refused", "data": None})
        task = self.new_task(request.match_info["kind"], body)
        return web.json_response({"code": 0, "message": "SUCCEED", "request_id": "r",
                                  "data": {"task_id": task.id, "task_status": "submitted",
                                           "created_at": 1700000000000}})

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"code": 1004, "message": "auth failed"}, status=401)
        task = self.tasks.get(request.match_info["id"])
        if task is None or task.kind != request.match_info["kind"]:
            return web.json_response({"code": 1203, "message": "task not found"}, status=404)
        state = self.advance(task)
        data: dict[str, Any] = {"task_id": task.id, "task_status": "processing", "task_status_msg": ""}
        if state == "success":
            data.update(task_status="succeed", task_result={"videos": [
                {"id": "v1", "url": f"{self.url}/files/{task.id}.mp4", "duration": task.body.get("duration", "5")}]})
        elif state == "failure":
            data.update(task_status="failed", task_status_msg="content check failed")
        return web.json_response({"code": 0, "message": "SUCCEED", "data": data})

    async def _file(self, request: web.Request) -> web.Response:
        return web.Response(body=MP4, content_type="video/mp4")


class FakeJimeng(FakeTaskServer):
    """Volcengine visual API; the signature is recomputed here from the request as received."""

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/", self._action)

    def _signature_ok(self, request: web.Request, raw: bytes) -> bool:
        access, _, secret = self.key.partition("|")
        auth = request.headers.get("Authorization", "")
        fields = dict(p.strip().split("=", 1) for p in auth.removeprefix("HMAC-SHA256 ").split(","))
        cred = fields.get("Credential", "").split("/")
        if len(cred) != 5 or cred[0] != access or cred[2:] != ["cn-north-1", "cv", "request"]:
            return False
        names = fields["SignedHeaders"].split(";")
        if not {"host", "x-date", "x-content-sha256"} <= set(names):
            return False
        body_hash = hashlib.sha256(raw).hexdigest()
        if request.headers.get("X-Content-Sha256") != body_hash:
            return False
        query = "&".join(sorted(f"{k}={v}" for k, v in request.query.items()))
        canonical = "\n".join(["POST", "/", query] + ["".join(f"{n}:{request.headers[n]}\n" for n in names)]
                              + [";".join(names), body_hash])
        date = request.headers["X-Date"]
        scope = f"{cred[1]}/cn-north-1/cv/request"
        string = f"HMAC-SHA256\n{date}\n{scope}\n" + hashlib.sha256(canonical.encode()).hexdigest()
        k = secret.encode()
        for part in (cred[1], "cn-north-1", "cv", "request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        return hmac.compare_digest(hmac.new(k, string.encode(), hashlib.sha256).hexdigest(), fields["Signature"])

    async def _action(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if request.query.get("Version") != "2022-08-31" or not self._signature_ok(request, raw):
            return web.json_response({"code": 50400, "message": "Access Denied"}, status=401)
        body = json.loads(raw)
        if request.query.get("Action") == "CVSync2AsyncSubmitTask":
            if self.refuse:
                return web.json_response({"code": self.refuse.pop(0), "message": "refused", "data": None})
            task = self.new_task(body["req_key"], body)
            return web.json_response({"code": 10000, "message": "Success", "request_id": "r",
                                      "data": {"task_id": task.id}})
        task = self.tasks.get(body.get("task_id", ""))
        if task is None or task.kind != body.get("req_key"):
            return web.json_response({"code": 10000, "message": "Success", "data": {"status": "not_found"}})
        state = self.advance(task)
        if state == "success":
            return web.json_response({"code": 10000, "message": "Success",
                                      "data": {"status": "done", "video_url": f"{self.url}/v/{task.id}.mp4"}})
        if state == "failure":
            return web.json_response({"code": 50413, "message": "Post Text Risk Not Pass", "data": None})
        return web.json_response({"code": 10000, "message": "Success", "data": {"status": "generating"}})


class FakeOpenAIVideos(FakeTaskServer):
    """OpenAI ``/v1/videos`` (multipart create, JSON retrieve, binary content)."""

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/videos", self._create)
        r.add_get("/v1/videos/{id}", self._get)
        r.add_get("/v1/videos/{id}/content", self._content)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.key}"

    def _video(self, task: FakeTask, status: str, progress: int) -> dict[str, Any]:
        out: dict[str, Any] = {"id": task.id, "object": "video", "model": task.body.get("model"), "status": status,
                               "progress": progress, "created_at": 1700000000, "seconds": task.body.get("seconds"),
                               "size": task.body.get("size", "720x1280"), "error": None}
        if status == "failed":
            out["error"] = {"code": "moderation_blocked", "message": "blocked by moderation"}
        return out

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}},
                                     status=401)
        form = request[FORM]
        task = self.new_task("video", form, "video_" + uuid.uuid4().hex)
        return web.json_response(self._video(task, "queued", 0))

    async def _get(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.match_info["id"])
        if not self._authorized(request) or task is None:
            return web.json_response({"error": {"message": "no such video"}}, status=404)
        state = self.advance(task)
        status = {"success": "completed", "failure": "failed"}.get(state, "in_progress")
        return web.json_response(self._video(task, status, 100 if state == "success" else 30))

    async def _content(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        return web.Response(body=MP4, content_type="video/mp4")
