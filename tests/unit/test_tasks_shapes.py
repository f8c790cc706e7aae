"""The task APIs' answer shapes (dialects/tasks.py) and request checks (task_requests.py)."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.video import Video

from relaykit.dialects import task_requests as rq
from relaykit.dialects import tasks as shapes


def view(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"task_id": "1700000000000123456", "platform": "midjourney", "action": "IMAGINE",
                            "model": "mj_imagine", "status": "IN_PROGRESS", "progress": 42, "fail_reason": "",
                            "request": {"prompt": "a cat", "state": "s"}, "result": {}, "seconds": 0,
                            "submit_time": 1700000000.25, "start_time": 1700000001.0, "finish_time": None}
    base.update(over)
    return base


def test_mj_task_times_are_milliseconds_and_progress_a_percent() -> None:
    got = shapes.mj_task(view(result={"imageUrl": "https://cdn/x.png", "buttons": [{"customId": "c"}]}))
    assert got["submitTime"] == 1700000000250 and got["startTime"] == 1700000001000 and got["finishTime"] is None
    assert got["progress"] == "42%" and got["status"] == "IN_PROGRESS" and got["prompt"] == "a cat"
    assert got["description"] == "/imagine a cat" and got["imageUrl"] == "https://cdn/x.png"
    assert got["buttons"] == [{"customId": "c"}] and "videoUrl" not in got


@pytest.mark.parametrize(("internal", "mj", "suno", "video"), [
    ("SUBMITTING", "NOT_START", "NOT_START", "queued"), ("QUEUED", "SUBMITTED", "QUEUED", "queued"),
    ("IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS", "in_progress"), ("SUCCESS", "SUCCESS", "SUCCESS", "completed"),
    ("FAILURE", "FAILURE", "FAILURE", "failed")])
def test_status_maps(internal: str, mj: str, suno: str, video: str) -> None:
    assert (shapes.mj_status(internal), shapes.suno_status(internal), shapes.video_status(internal)) == (
        mj, suno, video)


def test_mj_submit_and_error_codes() -> None:
    assert shapes.mj_submit(1, "Submit success", "9") == {"code": 1, "description": "Submit success",
                                                          "result": "9", "properties": {}}
    assert shapes.mj_error(404, "gone")["code"] == shapes.MJ_NOT_FOUND
    assert shapes.mj_error(402, "poor")["code"] == shapes.MJ_INVALID
    assert shapes.mj_error(502, "down")["code"] == shapes.MJ_SYSTEM


@pytest.mark.parametrize(("custom", "action"), [
    ("MJ::JOB::upsample::1::abc", "UPSCALE"), ("MJ::JOB::upsample_v6_2x_subtle::1::abc::SOLO", "UPSCALE"),
    ("MJ::JOB::variation::3::abc", "VARIATION"), ("MJ::JOB::reroll::0::abc::SOLO", "REROLL"),
    ("MJ::JOB::high_variation::1::abc::SOLO", "HIGH_VARIATION"), ("MJ::JOB::pan_left::1::abc::SOLO", "PAN"),
    ("MJ::Outpaint::50::1::abc::SOLO", "ZOOM"), ("MJ::CustomZoom::abc", "CUSTOM_ZOOM"), ("junk", "ACTION")])
def test_button_actions_and_their_prices(custom: str, action: str) -> None:
    assert shapes.mj_action_of(custom) == action
    assert shapes.mj_model(action) == "mj_" + action.lower()


def test_suno_task_times_are_seconds() -> None:
    got = shapes.suno_task(view(platform="suno", action="MUSIC", status="SUCCESS", progress=100,
                                finish_time=1700000100.9, result={"data": [{"id": "c"}]}))
    assert got["submit_time"] == 1700000000 and got["finish_time"] == 1700000100 and got["progress"] == "100%"
    assert got["data"] == [{"id": "c"}] and shapes.suno_ok(got)["code"] == "success"
    assert shapes.suno_error("task_not_found", "no")["data"] is None


def test_video_object_parses_as_the_openai_sdk_model() -> None:
    v = view(task_id="video_1", platform="video", action="GENERATE", model="sora-2", status="SUCCESS",
             progress=100, seconds=8, finish_time=1700000099.0, request={"prompt": "fox", "size": "1280x720"})
    video = Video.model_validate(shapes.video_object(v))  # strict validation, not the SDK's lenient path
    assert (video.id, video.status, video.seconds, video.size, video.completed_at) == (
        "video_1", "completed", "8", "1280x720", 1700000099)
    failed = Video.model_validate(shapes.video_object({**v, "status": "FAILURE", "fail_reason": "blocked"}))
    assert failed.error is not None and failed.error.message == "blocked" and failed.completed_at is None


def test_video_generation_adds_url_and_metadata() -> None:
    got = shapes.video_generation(view(platform="video", status="SUCCESS", seconds=5,
                                       request={"size": "1280x720"}, result={"url": "https://v/x.mp4"}))
    assert got["url"] == "https://v/x.mp4" and got["format"] == "mp4" and got["task_id"] == got["id"]
    assert got["metadata"] == {"duration": 5, "width": 1280, "height": 720}


def test_mj_requests() -> None:
    imagine = rq.mj_request("imagine", {"prompt": "a cat", "botType": "NIJI_JOURNEY", "notifyHook": "https://h/x"})
    assert (imagine.action, imagine.model, imagine.notify_hook) == ("IMAGINE", "mj_imagine", "https://h/x")
    change = rq.mj_request("simple-change", {"content": "123 U2"})
    assert (change.action, change.parent, change.upstream["index"]) == ("UPSCALE", "123", 2)
    reroll = rq.mj_request("change", {"taskId": "1", "action": "reroll"})
    assert reroll.model == "mj_reroll" and "index" not in reroll.upstream
    blend = rq.mj_request("blend", {"base64Array": ["a", "b"]})
    assert blend.upstream["dimensions"] == "SQUARE" and blend.echo == {}  # images are not kept


@pytest.mark.parametrize(("kind", "body", "words"), [
    ("imagine", {}, "'prompt' field is required"), ("imagine", {"prompt": "x", "botType": "X"}, "botType"),
    ("change", {"taskId": "1", "action": "UPSCALE", "index": 5}, "from 1 to 4"),
    ("change", {"taskId": "1", "action": "ZOOM", "index": 1}, "UPSCALE, VARIATION or REROLL"),
    ("blend", {"base64Array": ["a"]}, "between 2 and 5"), ("imagine", {"prompt": "x", "notifyHook": "ftp://h"},
                                                          "http://"),
    ("shorten", {}, "no Midjourney submit action")])
def test_bad_mj_requests(kind: str, body: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        rq.mj_request(kind, body)


def test_suno_and_video_requests() -> None:
    music = rq.suno_request("music", {"model": "chirp-v4", "gpt_description_prompt": "calm", "task_id": "t"})
    assert music.upstream == {"gpt_description_prompt": "calm", "mv": "chirp-v4"} and music.parent == "t"
    with pytest.raises(ValueError, match="needs 'prompt'"):
        rq.suno_request("music", {"title": "x"})
    video = rq.video_request({"model": "kling-v1", "image_url": "https://i/x.png", "duration": "10",
                              "metadata": {"mode": "pro", "aspect_ratio": "9:16"}})
    assert video.seconds == 10 and video.extra["mode"] == "pro" and video.upstream["aspect_ratio"] == "9:16"
    assert video.echo["image_url"] == "https://i/x.png"
    assert rq.video_request({"model": "m", "prompt": "p", "width": 640, "height": 480}).upstream["size"] == "640x480"
    for bad, words in (({"model": "m"}, "needs a 'prompt'"), ({"model": "m", "prompt": "p", "duration": 0},
                                                               "between 1"),
                       ({"model": "m", "prompt": "p", "mode": "turbo"}, "'std' or 'pro'")):
        with pytest.raises(ValueError, match=words):
            rq.video_request(bad)
