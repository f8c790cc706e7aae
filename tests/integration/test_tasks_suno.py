"""Issue 7, Suno: a song through ``/suno/submit/music`` and through
``/v1/music/generations``, lyrics, batch fetch, and errors in Suno's own shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes_tasks import FakeSuno
from tests.fakes_tasks.support import TaskClient, channel, config, ledger_for, quota

SUNO_KEY = "suno-upstream-key-CANARY"
START = 1_000_000


@pytest.fixture
async def suno() -> AsyncIterator[FakeSuno]:
    async with FakeSuno(SUNO_KEY) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def suno_config(fake: FakeSuno) -> str:
    return config(channel("suno-1", "suno", fake.url, SUNO_KEY, ["suno_music", "suno_lyrics"]))


async def test_a_song_is_made_and_billed_once(relay_factory, suno, session) -> None:
    relay = await relay_factory(suno_config(suno))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    status, sub = await c.post("/suno/submit/music", {"prompt": "[Verse] city lights", "mv": "chirp-v4",
                                                      "title": "City Lights", "tags": "emotional punk"})
    assert status == 200 and sub["code"] == "success" and sub["message"] == ""
    tid = sub["data"]
    assert tid not in suno.tasks
    assert suno.submitted()[0].body == {"prompt": "[Verse] city lights", "mv": "chirp-v4", "title": "City Lights",
                                        "tags": "emotional punk"}
    done = await c.until(f"/suno/fetch/{tid}", lambda b: b["data"]["status"] == "SUCCESS")
    assert done["code"] == "success"
    task = done["data"]
    assert task["task_id"] == tid and task["action"] == "MUSIC" and task["progress"] == "100%"
    assert 10**9 < task["submit_time"] < 10**11 and task["finish_time"] >= task["submit_time"]  # seconds
    [clip] = task["data"]
    assert clip["title"] == "City Lights" and clip["status"] == "complete" and clip["audio_url"].endswith(".mp3")

    await relay.settled(1)
    assert relay.balance("ann") == START - quota("suno_music")
    assert [e["kind"] for e in ledger_for(relay, "ann", tid)] == ["charge"]

    status, many = await c.post("/suno/fetch", {"ids": [tid, "unknown"], "action": "MUSIC"})
    assert status == 200 and [t["task_id"] for t in many["data"]] == [tid]


async def test_music_generations_endpoint_and_lyrics(relay_factory, suno, session) -> None:
    relay = await relay_factory(suno_config(suno))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    status, created = await c.post("/v1/music/generations", {"model": "chirp-v4",
                                                              "gpt_description_prompt": "a calm piano piece"})
    assert status == 200 and created["object"] == "music.generation" and created["status"] == "queued"
    assert suno.submitted()[0].body["mv"] == "chirp-v4"
    done = await c.until(f"/v1/music/generations/{created['id']}", lambda b: b["status"] == "completed")
    assert done["progress"] == 100 and done["data"][0]["status"] == "complete" and done["error"] is None

    status, lyr = await c.post("/suno/submit/lyrics", {"prompt": "dance"})
    assert status == 200
    got = await c.until(f"/suno/fetch/{lyr['data']}", lambda b: b["data"]["status"] == "SUCCESS")
    assert got["data"]["action"] == "LYRICS" and got["data"]["data"]["text"] == "la la"
    assert suno.submitted()[-1].path == "/suno/submit/lyrics"
    await relay.settled(2)
    assert relay.balance("ann") == START - quota("suno_music") - quota("suno_lyrics")


async def test_suno_errors_in_suno_shape(relay_factory, suno, session) -> None:
    relay = await relay_factory(suno_config(suno))
    relay.user("ann", quota=START)
    relay.user("bob", quota=START)
    ann = TaskClient(relay, session, relay.token("ann"))
    bob = TaskClient(relay, session, relay.token("bob"))
    _, sub = await ann.post("/suno/submit/music", {"prompt": "ann's song"})

    status, body = await bob.get(f"/suno/fetch/{sub['data']}")
    assert status == 404 and body == {"code": "task_not_found", "message": f"There is no task '{sub['data']}'.",
                                      "data": None}
    status, body = await bob.get("/v1/music/generations/nope")
    assert status == 404 and body["error"]["code"] == "task_not_found"  # the OpenAI-style endpoint
    status, body = await bob.post("/suno/submit/music", {"title": "no prompt"})
    assert status == 400 and body["code"] == "invalid_request_error" and body["data"] is None

    suno.refuse = ["the prompt breaks the rules"]
    status, body = await bob.post("/suno/submit/music", {"prompt": "bad words"})
    assert status == 400 and body["code"] == "upstream_refused" and "breaks the rules" in body["message"]
    assert relay.balance("bob") == START
    await ann.until(f"/suno/fetch/{sub['data']}", lambda b: b["data"]["status"] == "SUCCESS")


async def test_failing_song_returns_the_balance(relay_factory, suno, session) -> None:
    relay = await relay_factory(suno_config(suno))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    suno.outcome = "failure"
    _, sub = await c.post("/suno/submit/music", {"prompt": "x"})
    done = await c.until(f"/suno/fetch/{sub['data']}", lambda b: b["data"]["status"] == "FAILURE")
    assert done["data"]["fail_reason"] == "the song could not be made"
    await relay.settled(1)
    assert relay.balance("ann") == START
    assert [e["kind"] for e in ledger_for(relay, "ann", sub["data"])] == ["release"]
