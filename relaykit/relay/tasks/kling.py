"""Channel type ``kling``: Kling's video API (PROTOCOLS §7.3).

``POST /v1/videos/text2video`` or ``/v1/videos/image2video`` (when the client gave an
image), then ``GET`` the same path with the task id.  Auth is a short-lived HS256 JWT
(``iss`` = access key, signed with the secret key), made from a channel key written as
``"ACCESS|SECRET"``; a key without ``|`` is sent as a plain bearer token (Kling
resellers' gateways).  Vendor ``code`` 0 is success.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote

import orjson

from ...domain import Channel
from ...errors import UpstreamError
from ...store.tasks import TaskRecord
from ..channels.base import join_url
from .base import Accepted, Http, Media, Refused, Snapshot, Submit, TaskGone, message_of

JWT_SECONDS = 1800
_STATUS = {"submitted": "SUBMITTED", "processing": "IN_PROGRESS", "succeed": "SUCCESS", "failed": "FAILURE"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_for(key: str, now: float) -> str:
    """The bearer credential for a channel key (``ACCESS|SECRET`` -> a signed JWT)."""
    access, sep, secret = key.partition("|")
    if not sep:
        return key
    header = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
    payload = _b64(orjson.dumps({"iss": access, "exp": int(now) + JWT_SECONDS, "nbf": int(now) - 5}))
    signing = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(secret.encode(), signing, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


def _headers(key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Accept": "application/json",
            "Authorization": f"Bearer {jwt_for(key, time.time())}"}


def _kind(image: bool) -> str:
    return "image2video" if image else "text2video"


def _vendor_failure(answer: dict[str, Any]) -> None:
    """Kling's own codes: 1000s auth, 1100s the account (balance, limits), 1200s the
    request, 1300s content policy, 5000s Kling itself."""
    code = answer.get("code")
    said = message_of(answer, "message") or f"code {code}"
    if not isinstance(code, int):
        raise UpstreamError("The Kling upstream answered with something relaykit cannot read.")
    if 1000 <= code < 1200 or code >= 5000:
        raise UpstreamError(f"The Kling upstream could not take the task ({said}).", status=502)
    raise Refused(f"The Kling upstream refused the task: {said}.")


class KlingAdapter:
    platforms = frozenset({"video"})
    default_seconds = 5

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted:
        f = req.fields
        image = str(f.get("image") or "")
        body: dict[str, Any] = {"model_name": req.model, "prompt": f.get("prompt") or "",
                                "mode": f.get("mode") or "std", "duration": str(req.seconds),
                                "external_task_id": req.task_id}
        for k in ("negative_prompt", "cfg_scale", "aspect_ratio", "camera_control"):
            if f.get(k) is not None:
                body[k] = f[k]
        if image:
            body["image"] = image.split(",", 1)[1] if image.startswith("data:") and "," in image else image
        url = join_url(channel.base_url, f"/v1/videos/{_kind(bool(image))}")
        status, answer = await http.call("POST", url, headers=_headers(key), body=orjson.dumps(body),
                                         timeouts=channel.timeouts)
        http.check(status, answer)
        if not isinstance(answer, dict):
            raise UpstreamError("The Kling upstream answered with something relaykit cannot read.")
        if answer.get("code") != 0:
            _vendor_failure(answer)
        task_id = (answer.get("data") or {}).get("task_id") if isinstance(answer.get("data"), dict) else None
        if not task_id:
            raise UpstreamError("The Kling upstream accepted the task but gave no task id.")
        return Accepted(str(task_id))

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot:
        kind = _kind(bool(task.request.get("image")))
        url = join_url(channel.base_url, f"/v1/videos/{kind}/{quote(task.upstream_id, safe='')}")
        status, answer = await http.call("GET", url, headers=_headers(key), timeouts=channel.timeouts)
        if status == 404:
            raise TaskGone("The Kling upstream does not know this task.")
        http.check(status, answer)
        if not isinstance(answer, dict) or answer.get("code") != 0 or not isinstance(answer.get("data"), dict):
            raise UpstreamError("The Kling upstream did not answer the poll.")
        data = answer["data"]
        state = _STATUS.get(str(data.get("task_status") or ""), "IN_PROGRESS")
        result: dict[str, Any] = {}
        videos = (data.get("task_result") or {}).get("videos") if isinstance(data.get("task_result"), dict) else None
        if isinstance(videos, list) and videos and isinstance(videos[0], dict):
            result["url"] = videos[0].get("url") or ""
            try:
                result["duration"] = float(videos[0].get("duration") or 0) or None
            except (TypeError, ValueError):
                pass
        reason = str(data.get("task_status_msg") or "") if state == "FAILURE" else ""
        progress = {"SUBMITTED": 0, "IN_PROGRESS": 50, "SUCCESS": 100}.get(state, 0)
        return Snapshot(state, progress, reason or ("The Kling task failed." if state == "FAILURE" else ""), result)

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None:
        url = task.result.get("url")
        return Media(url) if isinstance(url, str) and url else None
