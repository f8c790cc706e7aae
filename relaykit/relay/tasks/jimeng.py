"""Channel type ``jimeng``: Jimeng video on the Volcengine visual API (PROTOCOLS §7.3).

``POST /?Action=CVSync2AsyncSubmitTask&Version=2022-08-31`` starts a task and
``Action=CVSync2AsyncGetResult`` reads it; ``code`` 10000 is success.  Requests are
signed with Volcengine's HMAC-SHA256 scheme (region ``cn-north-1``, service ``cv``)
from a channel key written as ``"ACCESS|SECRET"``.  The ``req_key`` is the channel's
upstream model when it names one (``jimeng_...``), else the text- or image-to-video
default.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from ...domain import Channel
from ...errors import UpstreamError
from ...store.tasks import TaskRecord
from .base import Accepted, Http, Media, Refused, Snapshot, Submit, TaskGone, message_of

VERSION = "2022-08-31"
REGION = "cn-north-1"
SERVICE = "cv"
T2V, I2V = "jimeng_vgfm_t2v_l20", "jimeng_vgfm_i2v_l20"
OK = 10000
_STATUS = {"in_queue": "QUEUED", "generating": "IN_PROGRESS", "done": "SUCCESS"}


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(method: str, url: str, body: bytes, access: str, secret: str, when: float) -> dict[str, str]:
    """Headers carrying a Volcengine signature for one request."""
    parts = urlsplit(url)
    xdate = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    day = xdate[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {"content-type": "application/json", "host": parts.netloc, "x-content-sha256": payload_hash,
               "x-date": xdate}
    signed = ";".join(sorted(headers))
    pairs = sorted(p.partition("=")[::2] for p in parts.query.split("&") if p)
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    canonical = "\n".join([method, parts.path or "/", query,
                           "".join(f"{k}:{headers[k].strip()}\n" for k in sorted(headers)), signed, payload_hash])
    scope = f"{day}/{REGION}/{SERVICE}/request"
    to_sign = "\n".join(["HMAC-SHA256", xdate, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(secret.encode(), day), REGION), SERVICE), "request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Host": parts.netloc, "X-Content-Sha256": payload_hash,
            "X-Date": xdate,
            "Authorization": f"HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed}, Signature={signature}"}


def req_key(model: str, image: bool) -> str:
    return model if model.startswith("jimeng_") else (I2V if image else T2V)


def _code_failure(answer: dict[str, Any]) -> None:
    code = answer.get("code")
    said = message_of(answer, "message") or f"code {code}"
    if code in (50429, 50430) or (isinstance(code, int) and code >= 50500):
        raise UpstreamError(f"The Jimeng upstream is busy ({said}).", status=502)
    raise Refused(f"The Jimeng upstream refused the task: {said}.")


class JimengAdapter:
    platforms = frozenset({"video"})
    default_seconds = 5

    async def _call(self, http: Http, channel: Channel, key: str, action: str,
                    body: dict[str, Any]) -> tuple[int, Any]:
        access, sep, secret = key.partition("|")
        if not sep:
            raise UpstreamError("The Jimeng channel key must be written as ACCESS|SECRET.", status=502)
        url = f"{channel.base_url.rstrip('/')}/?Action={action}&Version={VERSION}"
        raw = orjson.dumps(body)
        return await http.call("POST", url, headers=sign("POST", url, raw, access, secret, time.time()),
                               body=raw, timeouts=channel.timeouts)

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted:
        f = req.fields
        image = str(f.get("image") or "")
        body: dict[str, Any] = {"req_key": req_key(req.model, bool(image)), "prompt": f.get("prompt") or "",
                                "seed": f.get("seed", -1), "aspect_ratio": f.get("aspect_ratio") or "16:9",
                                "frames": 24 * req.seconds + 1}
        if image.startswith(("http://", "https://")):
            body["image_urls"] = [image]
        elif image:
            body["binary_data_base64"] = [image.split(",", 1)[1] if image.startswith("data:") else image]
        status, answer = await self._call(http, channel, key, "CVSync2AsyncSubmitTask", body)
        http.check(status, answer)
        if not isinstance(answer, dict):
            raise UpstreamError("The Jimeng upstream answered with something relaykit cannot read.")
        if answer.get("code") != OK:
            _code_failure(answer)
        data = answer.get("data")
        if not isinstance(data, dict) or not data.get("task_id"):
            raise UpstreamError("The Jimeng upstream accepted the task but gave no task id.")
        return Accepted(str(data["task_id"]))

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot:
        body = {"req_key": req_key(task.upstream_model, bool(task.request.get("image"))), "task_id": task.upstream_id}
        status, answer = await self._call(http, channel, key, "CVSync2AsyncGetResult", body)
        http.check(status, answer)
        if not isinstance(answer, dict):
            raise UpstreamError("The Jimeng upstream did not answer the poll.")
        if answer.get("code") != OK:
            try:
                _code_failure(answer)
            except Refused as exc:  # the task itself failed (content check, bad image)
                return Snapshot("FAILURE", 0, exc.message)
        data: dict[str, Any] = answer["data"] if isinstance(answer.get("data"), dict) else {}
        raw_status = str(data.get("status") or "")
        if raw_status in ("not_found", "expired"):
            raise TaskGone(f"The Jimeng upstream says the task is {raw_status.replace('_', ' ')}.")
        state = _STATUS.get(raw_status, "IN_PROGRESS")
        if state == "SUCCESS":
            url = data.get("video_url")
            if not isinstance(url, str) or not url:
                return Snapshot("FAILURE", 0, "The Jimeng task finished without a video.")
            return Snapshot("SUCCESS", 100, "", {"url": url})
        return Snapshot(state, 50 if state == "IN_PROGRESS" else 0)

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None:
        url = task.result.get("url")
        return Media(url) if isinstance(url, str) and url else None
