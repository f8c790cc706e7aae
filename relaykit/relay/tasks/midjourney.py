"""Channel type ``midjourney``: an upstream midjourney-proxy (PROTOCOLS §7.1).

The proxy speaks the same API relaykit serves, so the client's checked fields pass on
as they are; only task ids change: a change or action names relaykit's id, and the
proxy is given its own id for that task.  Auth: the ``mj-api-secret`` header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from ...dialects.tasks import MJ_ACCEPTED, MJ_QUEUE_FULL, MJ_QUEUED, MJ_SYSTEM
from ...domain import Channel
from ...errors import UpstreamError
from ...store.tasks import TaskRecord
from ..channels.base import join_url
from .base import Accepted, Http, Media, Refused, Snapshot, Submit, TaskGone, message_of, percent

_SUBMIT_PATHS = {"IMAGINE": "/mj/submit/imagine", "BLEND": "/mj/submit/blend", "DESCRIBE": "/mj/submit/describe"}
_STATUS = {"NOT_START": "NOT_START", "SUBMITTED": "SUBMITTED", "IN_PROGRESS": "IN_PROGRESS", "MODAL": "MODAL",
           "SUCCESS": "SUCCESS", "FAILURE": "FAILURE", "CANCEL": "FAILURE"}
RESULT_FIELDS = ("imageUrl", "imageUrls", "buttons", "prompt", "promptEn", "description", "properties",
                 "videoUrl", "videoUrls")


def _headers(key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Accept": "application/json", "mj-api-secret": key}


class MidjourneyAdapter:
    platforms = frozenset({"midjourney"})
    default_seconds = 0

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted:
        body: dict[str, Any] = dict(req.fields)
        if req.parent is not None:
            body["taskId"] = req.parent.upstream_id
            path = "/mj/submit/action" if "customId" in body else "/mj/submit/change"
        else:
            path = _SUBMIT_PATHS[req.action]
        status, answer = await http.call("POST", join_url(channel.base_url, path), headers=_headers(key),
                                          body=orjson.dumps(body), timeouts=channel.timeouts)
        http.check(status, answer, "description")
        if not isinstance(answer, dict) or not isinstance(answer.get("code"), int):
            raise UpstreamError("The Midjourney upstream answered with something relaykit cannot read.")
        code = answer["code"]
        said = str(answer.get("description") or "")
        if code in MJ_ACCEPTED and answer.get("result"):
            return Accepted(str(answer["result"]), "QUEUED" if code == MJ_QUEUED else "SUBMITTED", code,
                            said or "Submit success")
        if code in (MJ_QUEUE_FULL, MJ_SYSTEM):
            raise Refused(said or "The Midjourney queue is full.", status=200, vendor_code=code, elsewhere=True)
        raise Refused(said or f"The Midjourney upstream refused the task (code {code}).", status=200,
                      vendor_code=code)

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot:
        url = join_url(channel.base_url, f"/mj/task/{quote(task.upstream_id, safe='')}/fetch")
        status, answer = await http.call("GET", url, headers=_headers(key), timeouts=channel.timeouts)
        if status == 404 or (status < 400 and answer is None):
            raise TaskGone("The Midjourney upstream does not know this task.")
        http.check(status, answer, "description")
        if not isinstance(answer, dict):
            raise UpstreamError("The Midjourney upstream answered with something relaykit cannot read.")
        state = _STATUS.get(str(answer.get("status") or ""), "IN_PROGRESS")
        result = {k: answer[k] for k in RESULT_FIELDS if answer.get(k) not in (None, "", [], {})}
        reason = str(answer.get("failReason") or "")
        if state == "FAILURE" and not reason:
            reason = message_of(answer, "description") or "The Midjourney task failed."
        return Snapshot(state, percent(answer.get("progress")), reason, result)

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None:
        url = task.result.get("imageUrl")
        return Media(url) if isinstance(url, str) and url else None
