"""Answer shapes of the task APIs (PROTOCOLS §7): Midjourney-proxy, Suno, video.

Pure functions of a task *view* (the plain dict ``store.tasks.TaskRecord.view`` gives):
no network, no database, no clock.  Each API keeps its own conventions:

* Midjourney-proxy: numeric ``code`` on submit (1 submitted, 21 exists, 22 queued,
  23 queue full, 24 banned prompt; 3 not found, 4 invalid, 9 system error), HTTP 200
  even for a refused submit, times in epoch **milliseconds**, progress as ``"42%"``.
* Suno (new-api task wrapper): ``{"code": "success", "message", "data"}``, any other code
  is an error; times in epoch **seconds**.
* Video: new-api's unified ``/v1/video/generations`` answer and OpenAI's ``Video`` object
  (``/v1/videos``), statuses ``queued | in_progress | completed | failed``.

relaykit keeps one internal status set (store/tasks.py) and maps it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# --------------------------------------------------------------------------- Midjourney

MJ_SUBMITTED = 1
MJ_EXISTS = 21
MJ_QUEUED = 22
MJ_QUEUE_FULL = 23
MJ_BANNED = 24
MJ_NOT_FOUND = 3
MJ_INVALID = 4
MJ_SYSTEM = 9
MJ_ACCEPTED = frozenset({MJ_SUBMITTED, MJ_EXISTS, MJ_QUEUED})

_MJ_STATUS = {"SUBMITTING": "NOT_START", "NOT_START": "NOT_START", "SUBMITTED": "SUBMITTED",
              "QUEUED": "SUBMITTED", "IN_PROGRESS": "IN_PROGRESS", "MODAL": "MODAL",
              "SUCCESS": "SUCCESS", "FAILURE": "FAILURE"}


def ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(round(seconds * 1000))


def mj_status(status: str) -> str:
    return _MJ_STATUS.get(status, "IN_PROGRESS")


def mj_submit(code: int, description: str, task_id: str | None,
              properties: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "description": description, "result": task_id, "properties": dict(properties or {})}


def mj_error_code(status: int) -> int:
    if status == 404:
        return MJ_NOT_FOUND
    return MJ_INVALID if status < 500 else MJ_SYSTEM


def mj_error(status: int, message: str) -> dict[str, Any]:
    return mj_submit(mj_error_code(status), message, None)


def mj_task(view: Mapping[str, Any]) -> dict[str, Any]:
    """A task as ``GET /mj/task/{id}/fetch`` returns it."""
    req: Mapping[str, Any] = view.get("request") or {}
    res: Mapping[str, Any] = view.get("result") or {}
    action = str(view.get("action") or "")
    prompt = str(req.get("prompt") or res.get("prompt") or "")
    out: dict[str, Any] = {
        "id": view["task_id"], "action": action, "customId": str(req.get("customId") or ""),
        "botType": str(req.get("botType") or ""), "prompt": prompt,
        "promptEn": str(res.get("promptEn") or prompt),
        "description": str(res.get("description") or (f"/{action.lower()} {prompt}".strip())),
        "state": str(req.get("state") or ""),
        "submitTime": ms(view.get("submit_time")), "startTime": ms(view.get("start_time")),
        "finishTime": ms(view.get("finish_time")),
        "imageUrl": str(res.get("imageUrl") or ""), "status": mj_status(str(view.get("status"))),
        "progress": f"{int(view.get('progress') or 0)}%", "failReason": str(view.get("fail_reason") or ""),
        "buttons": list(res.get("buttons") or []), "properties": dict(res.get("properties") or {}),
    }
    for extra in ("imageUrls", "videoUrl", "videoUrls"):
        if res.get(extra):
            out[extra] = res[extra]
    return out


# Midjourney button ids (``customId``) name the action they start.
_JOB_ACTIONS = {"upsample": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL",
                "low_variation": "LOW_VARIATION", "high_variation": "HIGH_VARIATION"}
_OTHER_ACTIONS = {"Outpaint": "ZOOM", "CustomZoom": "CUSTOM_ZOOM", "Inpaint": "INPAINT",
                  "PicReader": "DESCRIBE", "Job": "ACTION"}


def mj_action_of(custom_id: str) -> str:
    """The action a button starts: ``MJ::JOB::upsample::1::<hash>`` -> UPSCALE."""
    parts = custom_id.split("::")
    if len(parts) < 3 or parts[0] != "MJ":
        return "ACTION"
    if parts[1] == "JOB":
        kind = parts[2]
        if kind in _JOB_ACTIONS:
            return _JOB_ACTIONS[kind]
        if kind.startswith("upsample"):
            return "UPSCALE"       # upsample_v6_2x_subtle and friends
        if kind.startswith("pan_"):
            return "PAN"
        return "ACTION"
    return _OTHER_ACTIONS.get(parts[1], "ACTION")


def mj_model(action: str) -> str:
    """The priced model name of a Midjourney action (SPEC §5): UPSCALE -> mj_upscale."""
    return "mj_" + action.lower()


# --------------------------------------------------------------------------- Suno

_SUNO_STATUS = {"SUBMITTING": "NOT_START", "MODAL": "IN_PROGRESS"}


def suno_status(status: str) -> str:
    return _SUNO_STATUS.get(status, status)


def suno_ok(data: Any) -> dict[str, Any]:
    return {"code": "success", "message": "", "data": data}


def suno_error(code: str, message: str) -> dict[str, Any]:
    return {"code": code or "error", "message": message, "data": None}


def _s(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds)


def suno_task(view: Mapping[str, Any]) -> dict[str, Any]:
    """A task as ``/suno/fetch`` returns it (inside the ``data`` envelope)."""
    res: Mapping[str, Any] = view.get("result") or {}
    return {
        "task_id": view["task_id"], "action": str(view.get("action") or ""),
        "status": suno_status(str(view.get("status"))), "fail_reason": str(view.get("fail_reason") or ""),
        "submit_time": _s(view.get("submit_time")), "start_time": _s(view.get("start_time")),
        "finish_time": _s(view.get("finish_time")), "progress": f"{int(view.get('progress') or 0)}%",
        "data": res.get("data"),
    }


# --------------------------------------------------------------------------- video and music objects

_VIDEO_STATUS = {"IN_PROGRESS": "in_progress", "MODAL": "in_progress", "SUCCESS": "completed",
                 "FAILURE": "failed"}


def video_status(status: str) -> str:
    return _VIDEO_STATUS.get(status, "queued")


def _error(view: Mapping[str, Any]) -> dict[str, str] | None:
    if view.get("status") != "FAILURE":
        return None
    return {"code": "task_failed", "message": str(view.get("fail_reason") or "The task failed.")}


def _completed_at(view: Mapping[str, Any]) -> int | None:
    finish = view.get("finish_time")
    return int(finish) if finish is not None and view.get("status") == "SUCCESS" else None


def video_object(view: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's ``Video`` (``POST /v1/videos``, ``GET /v1/videos/{id}``): the fields the
    openai SDK reads, ``seconds`` and ``size`` as strings, ``progress`` 0-100."""
    req: Mapping[str, Any] = view.get("request") or {}
    res: Mapping[str, Any] = view.get("result") or {}
    return {
        "id": view["task_id"], "object": "video", "model": str(view.get("model") or ""),
        "status": video_status(str(view.get("status"))), "progress": int(view.get("progress") or 0),
        "created_at": int(view.get("submit_time") or 0), "completed_at": _completed_at(view),
        "expires_at": None, "seconds": str(view.get("seconds") or req.get("seconds") or ""),
        "size": str(req.get("size") or res.get("size") or ""), "prompt": req.get("prompt"), "remixed_from_video_id": None,
        "error": _error(view),
    }


def video_generation(view: Mapping[str, Any]) -> dict[str, Any]:
    """new-api's unified answer (``/v1/video/generations``): the OpenAI object plus
    ``task_id``, ``url``, ``format`` and ``metadata``."""
    out = video_object(view)
    res: Mapping[str, Any] = view.get("result") or {}
    meta: dict[str, Any] = {"duration": res.get("duration") or view.get("seconds") or None}
    size = str(out["size"])
    if "x" in size:
        w, _, h = size.partition("x")
        if w.isdigit() and h.isdigit():
            meta.update(width=int(w), height=int(h))
    out.update(task_id=view["task_id"], url=str(res.get("url") or "") or None, format="mp4", metadata=meta)
    return out


def music_generation(view: Mapping[str, Any]) -> dict[str, Any]:
    """``/v1/music/generations``: an OpenAI-style task object whose ``data`` is Suno's own
    clip list (or, for lyrics, the lyrics object)."""
    res: Mapping[str, Any] = view.get("result") or {}
    return {
        "id": view["task_id"], "task_id": view["task_id"], "object": "music.generation",
        "model": str(view.get("model") or ""), "action": str(view.get("action") or ""),
        "status": video_status(str(view.get("status"))), "progress": int(view.get("progress") or 0),
        "created_at": int(view.get("submit_time") or 0), "completed_at": _completed_at(view),
        "data": res.get("data"), "error": _error(view),
    }
