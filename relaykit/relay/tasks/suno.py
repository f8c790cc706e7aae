"""Channel type ``suno``: an upstream Suno API service of the kind new-api relays to
(PROTOCOLS §7.2): ``POST /suno/submit/{music,lyrics}`` and ``POST /suno/fetch``, with
``Authorization: Bearer``, answers wrapped as ``{"code": "success", "data": ...}``."""

from __future__ import annotations

from typing import Any

import orjson

from ...domain import Channel
from ...errors import UpstreamError
from ...store.tasks import TaskRecord
from ..channels.base import join_url
from .base import Accepted, Http, Media, Refused, Snapshot, Submit, TaskGone, percent

_STATUS = {"NOT_START": "NOT_START", "SUBMITTED": "SUBMITTED", "QUEUED": "QUEUED", "IN_PROGRESS": "IN_PROGRESS",
           "SUCCESS": "SUCCESS", "FAILURE": "FAILURE"}


def _headers(key: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Bearer {key}"}


class SunoAdapter:
    platforms = frozenset({"suno"})
    default_seconds = 0

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted:
        body: dict[str, Any] = dict(req.fields)
        if req.parent is not None:
            body["task_id"] = req.parent.upstream_id  # continue a song the upstream made
        if req.action == "MUSIC" and not body.get("mv") and req.model.startswith("chirp"):
            body["mv"] = req.model
        path = "/suno/submit/lyrics" if req.action == "LYRICS" else "/suno/submit/music"
        status, answer = await http.call("POST", join_url(channel.base_url, path), headers=_headers(key),
                                         body=orjson.dumps(body), timeouts=channel.timeouts)
        http.check(status, answer)
        if not isinstance(answer, dict):
            raise UpstreamError("The Suno upstream answered with something relaykit cannot read.")
        if answer.get("code") != "success" or not isinstance(answer.get("data"), str) or not answer["data"]:
            raise Refused(f"The Suno upstream refused the task: {answer.get('message') or answer.get('code')}.")
        return Accepted(answer["data"])

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot:
        body = orjson.dumps({"ids": [task.upstream_id], "action": task.action})
        status, answer = await http.call("POST", join_url(channel.base_url, "/suno/fetch"), headers=_headers(key),
                                         body=body, timeouts=channel.timeouts)
        http.check(status, answer)
        if not isinstance(answer, dict) or answer.get("code") != "success":
            raise UpstreamError("The Suno upstream did not answer the poll.")
        items = answer.get("data")
        found = next((i for i in items if isinstance(i, dict) and i.get("task_id") == task.upstream_id), None) \
            if isinstance(items, list) else None
        if found is None:
            raise TaskGone("The Suno upstream does not know this task.")
        state = _STATUS.get(str(found.get("status") or ""), "IN_PROGRESS")
        reason = str(found.get("fail_reason") or "")
        if state == "FAILURE" and not reason:
            reason = "The Suno task failed."
        result = {"data": found.get("data")} if found.get("data") is not None else {}
        return Snapshot(state, percent(found.get("progress")), reason, result)

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None:
        clips = task.result.get("data")
        if isinstance(clips, list) and clips and isinstance(clips[0], dict) and clips[0].get("audio_url"):
            return Media(str(clips[0]["audio_url"]))
        return None
