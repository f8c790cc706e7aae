"""Video models (``sora-*``) on an ``openai`` channel: OpenAI's ``/v1/videos``.

The upstream takes the form the openai SDK sends (multipart: ``prompt``, ``model``,
``seconds``, ``size``, and ``input_reference`` as an uploaded file or
``input_reference[image_url]``), answers with its ``Video`` object, and serves the
finished clip at ``/v1/videos/{id}/content`` with the same bearer key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote

import aiohttp

from ...domain import Channel
from ...errors import UpstreamError
from ...store.tasks import TaskRecord
from ..channels.base import join_url
from .base import Accepted, Http, Media, Refused, Snapshot, Submit, TaskGone, percent

_STATUS = {"queued": "QUEUED", "in_progress": "IN_PROGRESS", "completed": "SUCCESS", "failed": "FAILURE"}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Accept": "application/json"}


def _form(req: Submit) -> aiohttp.FormData:
    f = req.fields
    form = aiohttp.FormData(default_to_multipart=True)  # OpenAI takes multipart only
    form.add_field("prompt", str(f.get("prompt") or ""))
    form.add_field("model", req.model)
    form.add_field("seconds", str(req.seconds))
    if f.get("size"):
        form.add_field("size", str(f["size"]))
    image = str(f.get("image") or "")
    if image.startswith(("http://", "https://")):
        form.add_field("input_reference[image_url]", image)
    elif image:
        head, _, data = image.partition(",") if image.startswith("data:") else ("", "", image)
        ctype = head[5:].split(";")[0] if head else "image/png"
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise Refused("The image is neither a URL nor valid base64.") from None
        form.add_field("input_reference", raw, filename="reference." + ctype.rsplit("/", 1)[-1],
                       content_type=ctype or "image/png")
    return form


class OpenAIVideosAdapter:
    platforms = frozenset({"video"})
    default_seconds = 4

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted:
        status, answer = await http.call("POST", join_url(channel.base_url, "/v1/videos"), headers=_auth(key),
                                         data=_form(req), timeouts=channel.timeouts)
        http.check(status, answer, "error.message")
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str) or not answer["id"]:
            raise UpstreamError("The OpenAI videos upstream answered with something relaykit cannot read.")
        return Accepted(answer["id"], _STATUS.get(str(answer.get("status")), "QUEUED"))

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot:
        url = join_url(channel.base_url, f"/v1/videos/{quote(task.upstream_id, safe='')}")
        status, answer = await http.call("GET", url, headers=_auth(key), timeouts=channel.timeouts)
        if status == 404:
            raise TaskGone("The OpenAI videos upstream does not know this video.")
        http.check(status, answer, "error.message")
        if not isinstance(answer, dict):
            raise UpstreamError("The OpenAI videos upstream did not answer the poll.")
        state = _STATUS.get(str(answer.get("status")), "IN_PROGRESS")
        err = answer.get("error")
        reason = ""
        if state == "FAILURE":
            reason = (err.get("message") if isinstance(err, dict) else None) or "The video generation failed."
        result: dict[str, Any] = {"content": "upstream"} if state == "SUCCESS" else {}
        if isinstance(answer.get("size"), str) and answer["size"]:
            result["size"] = answer["size"]
        return Snapshot(state, percent(answer.get("progress")), str(reason), result)

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None:
        url = join_url(channel.base_url, f"/v1/videos/{quote(task.upstream_id, safe='')}/content")
        return Media(url, {"Authorization": f"Bearer {key}"})
