"""Issue 7, video: Kling text-to-video and image-to-video, Jimeng (signed requests),
duration pricing, OpenAI ``/v1/videos`` as the openai SDK reads it, failures refunded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from tests.fakes_tasks import MP4, FakeJimeng, FakeKling, FakeOpenAIVideos
from tests.fakes_tasks.support import TaskClient, channel, config, ledger_for, quota, task_row, wait_for

KLING_KEY = "ak-kling-CANARY|sk-kling-secret-CANARY"
JIMENG_KEY = "AKLTjimengCANARY|jimeng-secret-CANARY"
OPENAI_KEY = "sk-openai-videos-CANARY"
START = 5_000_000
sora = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture
async def kling() -> AsyncIterator[FakeKling]:
    async with FakeKling(KLING_KEY) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def kling_channel(fake: FakeKling) -> str:
    return channel("kling-1", "kling", fake.url, KLING_KEY, ["kling-v1"])


async def test_kling_text_to_video(relay_factory, kling, session) -> None:
    relay = await relay_factory(config(kling_channel(kling)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    status, sub = await c.post("/v1/video/generations", {"model": "kling-v1", "prompt": "a cat surfing",
                                                         "metadata": {"negative_prompt": "blur",
                                                                      "aspect_ratio": "16:9"}})
    assert status == 200 and sub["object"] == "video" and sub["status"] == "queued" and sub["progress"] == 0
    assert sub["id"] == sub["task_id"] and sub["id"].startswith("video_") and sub["model"] == "kling-v1"
    seen = kling.submitted()[0]
    assert seen.path == "/v1/videos/text2video"
    assert seen.body["model_name"] == "kling-v1" and seen.body["duration"] == "5"
    assert seen.body["negative_prompt"] == "blur" and seen.body["mode"] == "std"
    assert KLING_KEY.split("|")[1] not in str(seen.headers)  # the secret signs; it is never sent

    done = await c.until(f"/v1/video/generations/{sub['id']}", lambda b: b["status"] == "completed")
    assert done["url"].endswith(".mp4") and done["format"] == "mp4" and done["error"] is None
    assert done["metadata"]["duration"] == 5
    await relay.settled(1)
    assert relay.balance("ann") == START - quota("kling-v1")
    assert [e["kind"] for e in ledger_for(relay, "ann", sub["id"])] == ["charge"]

    status, ctype, data = await c.raw(f"/v1/videos/{sub['id']}/content")
    assert status == 200 and ctype == "video/mp4" and data == MP4


async def test_kling_image_to_video_priced_by_duration_and_mode(relay_factory, kling, session) -> None:
    relay = await relay_factory(config(kling_channel(kling)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    status, sub = await c.post("/v1/video/generations", {
        "model": "kling-v1", "prompt": "make it move", "image_url": "https://img.example/cat.png",
        "duration": 10, "metadata": {"mode": "pro"}})
    assert status == 200
    seen = kling.submitted()[0]
    assert seen.path == "/v1/videos/image2video" and seen.body["image"] == "https://img.example/cat.png"
    assert seen.body["duration"] == "10" and seen.body["mode"] == "pro"
    done = await c.until(f"/v1/video/generations/{sub['id']}", lambda b: b["status"] == "completed")
    assert done["seconds"] == "10"
    await relay.settled(1)
    assert relay.balance("ann") == START - quota("kling-v1-pro", 2)  # pro price, twice the 5-second clip


async def test_jimeng_video_with_signed_requests(relay_factory, session) -> None:
    async with FakeJimeng(JIMENG_KEY) as jimeng:
        relay = await relay_factory(config(channel("jimeng-1", "jimeng", jimeng.url, JIMENG_KEY, ["jimeng-v1"])))
        relay.user("ann", quota=START)
        c = TaskClient(relay, session, relay.token("ann"))
        status, sub = await c.post("/v1/video/generations", {"model": "jimeng-v1", "prompt": "rain on a window"})
        assert status == 200, sub
        assert jimeng.submitted()[0].body["req_key"] == "jimeng_vgfm_t2v_l20"
        done = await c.until(f"/v1/video/generations/{sub['id']}", lambda b: b["status"] == "completed")
        assert done["url"].endswith(".mp4")

        jimeng.outcome = "failure"
        _, bad = await c.post("/v1/video/generations", {"model": "jimeng-v1", "prompt": "x",
                                                        "image": "data:image/png;base64,aGVsbG8="})
        assert jimeng.submitted()[-1].body["binary_data_base64"] == ["aGVsbG8="]
        failed = await c.until(f"/v1/video/generations/{bad['id']}", lambda b: b["status"] == "failed")
        assert "Risk Not Pass" in failed["error"]["message"]
        await relay.settled(2)
        assert relay.balance("ann") == START - quota("jimeng-v1")


async def test_failed_video_returns_the_balance(relay_factory, kling, session) -> None:
    relay = await relay_factory(config(kling_channel(kling)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    kling.outcome = "failure"
    _, sub = await c.post("/v1/video/generations", {"model": "kling-v1", "prompt": "nope"})
    done = await c.until(f"/v1/video/generations/{sub['id']}", lambda b: b["status"] == "failed")
    assert done["error"] == {"code": "task_failed", "message": "content check failed"} and done["url"] is None
    await relay.settled(1)
    assert relay.balance("ann") == START
    [release] = ledger_for(relay, "ann", sub["id"])
    assert release["kind"] == "release" and release["amount"] == 0

    kling.refuse = [1301]  # content policy at submit
    status, body = await c.post("/v1/video/generations", {"model": "kling-v1", "prompt": "nope"})
    assert status == 400 and body["error"]["code"] == "upstream_refused"
    status, body = await c.post("/v1/video/generations", {"model": "kling-v9", "prompt": "x"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert relay.balance("ann") == START


@sora
async def test_openai_sdk_videos_create_and_retrieve(relay_factory, oai, session) -> None:
    async with FakeOpenAIVideos(OPENAI_KEY) as up:
        relay = await relay_factory(config(channel("openai-v", "openai", up.url, OPENAI_KEY, ["sora-2"])))
        relay.user("ann", quota=START)
        relay.user("bob", quota=START)
        client = oai(relay.base, relay.token("ann"))
        video = await client.videos.create(prompt="a fox in the snow", model="sora-2", seconds="8",
                                           size="1280x720")
        assert video.object == "video" and video.status == "queued" and video.model == "sora-2"
        assert video.seconds == "8" and video.size == "1280x720" and video.progress == 0
        assert up.submitted()[0].body["prompt"] == "a fox in the snow" and up.submitted()[0].body["seconds"] == "8"

        async def retrieve() -> object:
            return await client.videos.retrieve(video.id)

        done = await wait_for(retrieve, lambda v: v.status == "completed")
        assert done.id == video.id and done.progress == 100 and done.completed_at and done.error is None
        content = await client.videos.download_content(video.id)
        assert content.content == MP4

        await relay.settled(1)
        assert relay.balance("ann") == START - quota("sora-2", 8 / 5)

        with pytest.raises(openai.NotFoundError):
            await oai(relay.base, relay.token("bob")).videos.retrieve(video.id)
        with pytest.raises(openai.NotFoundError):
            await client.videos.retrieve("video_does_not_exist")
        async with session.post(relay.base + "/videos", data=b"garbage", headers={
                "Authorization": f"Bearer {relay.token('bob')}",
                "Content-Type": "multipart/form-data; boundary=xyz"}) as resp:
            assert resp.status == 400 and "multipart" in (await resp.json())["error"]["message"]


@sora
async def test_openai_sdk_image_reference_upload(relay_factory, oai) -> None:
    async with FakeOpenAIVideos(OPENAI_KEY) as up:
        relay = await relay_factory(config(channel("openai-v", "openai", up.url, OPENAI_KEY, ["sora-2"])))
        relay.user("ann", quota=START)
        client = oai(relay.base, relay.token("ann"))
        png = b"\x89PNG\r\n\x1a\nreference"
        video = await client.videos.create(prompt="animate this", model="sora-2",
                                           input_reference=("ref.png", png, "image/png"))
        sent = up.submitted()[0].body
        assert sent["input_reference"]["bytes"] == png  # the upload reached the upstream as a file, intact
        assert sent["seconds"] == "4" and task_row(relay, video.id)["seconds"] == 4  # OpenAI's default length
        await wait_for(lambda: client.videos.retrieve(video.id), lambda v: v.status == "completed")
        await relay.settled(1)
        assert relay.balance("ann") == START - quota("sora-2")
