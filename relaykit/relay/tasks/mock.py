"""The built-in ``mock`` channel for tasks: every task API works offline (the example
config prices ``mj_imagine``, ``suno_music`` and a video model on it).

Nothing is generated: a task runs for ``RUN_SECONDS`` after it was submitted, its progress
growing with time (so it survives a restart like a real upstream task), then succeeds with
placeholder results in each vendor's shape.
"""

from __future__ import annotations

import time
from typing import Any

from ...domain import Channel
from ...store.tasks import TaskRecord
from .base import Accepted, Http, Media, Snapshot, Submit

RUN_SECONDS = 1.0


def _mj_buttons() -> list[dict[str, Any]]:
    buttons = [{"customId": f"MJ::JOB::upsample::{i}::mock", "emoji": "", "label": f"U{i}", "type": 2, "style": 2}
               for i in range(1, 5)]
    buttons += [{"customId": f"MJ::JOB::variation::{i}::mock", "emoji": "", "label": f"V{i}", "type": 2,
                 "style": 2} for i in range(1, 5)]
    buttons.append({"customId": "MJ::JOB::reroll::0::mock::SOLO", "emoji": "🔄", "label": "", "type": 2,
                    "style": 2})
    return buttons


def _result(task: TaskRecord) -> dict[str, Any]:
    prompt = str(task.request.get("prompt") or "")
    if task.platform == "midjourney":
        out: dict[str, Any] = {"imageUrl": "", "buttons": [] if task.action == "DESCRIBE" else _mj_buttons()}
        if task.action == "DESCRIBE":
            out["prompt"] = out["promptEn"] = "1\ufe0f\u20e3 a placeholder image from the relaykit mock"
        return out
    if task.platform == "suno":
        if task.action == "LYRICS":
            return {"data": {"id": "mock-lyrics", "title": "Mock", "status": "complete",
                             "text": f"[Verse]\n{prompt or 'la la la'}"}}
        return {"data": [{"id": "mock-clip", "title": str(task.request.get("title") or "relaykit mock song"),
                          "status": "complete", "audio_url": "", "image_url": "", "video_url": "",
                          "tags": str(task.request.get("tags") or ""), "model_name": "mock",
                          "metadata": {"duration": 30, "prompt": prompt, "error_message": None}}]}
    return {"url": "", "duration": task.seconds}


class MockTaskAdapter:
    platforms = frozenset({"midjourney", "suno", "video"})
    default_seconds = 5

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted:
        return Accepted("mock-" + req.task_id)

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot:
        elapsed = time.time() - task.submit_time
        if elapsed < RUN_SECONDS:
            return Snapshot("IN_PROGRESS", min(99, int(100 * elapsed / RUN_SECONDS)))
        return Snapshot("SUCCESS", 100, "", _result(task))

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None:
        return None
