"""Issue 7, the task life cycle: relaykit restarted while tasks run still follows and
settles them (their holds survive the start-up hold recovery), deadlines release holds,
notifyHook goes only to public addresses, a chat request for a task model is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes_tasks import FakeHook, FakeKling, FakeMidjourney
from tests.fakes_tasks.support import TaskClient, channel, config, ledger_for, quota, task_row, wait_for
from tests.integration.harness import start_relay, stop_relay, write_config

MJ_KEY = "mj-secret-CANARY"
KLING_KEY = "ak-CANARY|sk-CANARY"
START = 2_000_000


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def mj() -> AsyncIterator[FakeMidjourney]:
    async with FakeMidjourney(MJ_KEY) as fake:
        yield fake


def mj_channel(fake: FakeMidjourney) -> str:
    return channel("mj", "midjourney", fake.url, MJ_KEY, ["mj_imagine", "mj_upscale"])


async def test_restart_while_tasks_run(relay_factory, mj, session, tmp_path: Path) -> None:
    async with FakeKling(KLING_KEY) as kling:
        body = config(mj_channel(mj), channel("kl", "kling", kling.url, KLING_KEY, ["kling-v1"]))
        first = await start_relay(write_config(tmp_path, body))
        first.user("ann", quota=START)
        key = first.token("ann")
        c = TaskClient(first, session, key)
        mj.hold = kling.hold = True
        _, image = await c.post("/mj/submit/imagine", {"prompt": "slow cat"})
        _, video = await c.post("/v1/video/generations", {"model": "kling-v1", "prompt": "slow dog"})
        await wait_for(lambda: (sum(mj.polls.values()), sum(kling.polls.values())), lambda n: min(n) >= 2)
        await stop_relay(first)

        held = quota("mj_imagine") + quota("kling-v1")
        assert first.open_holds() == 2 and first.balance("ann") == START - held
        mj.hold = kling.hold = False

        second = await relay_factory(body)  # same database; the start-up recovery must leave these holds
        c2 = TaskClient(second, session, key)
        await c2.until(f"/mj/task/{image['result']}/fetch", lambda b: b["status"] == "SUCCESS")
        await c2.until(f"/v1/video/generations/{video['id']}", lambda b: b["status"] == "completed")
        await second.settled(2)
        assert second.balance("ann") == START - held
        assert [e["kind"] for e in ledger_for(second, "ann", image["result"])] == ["charge"]
        assert [e["kind"] for e in ledger_for(second, "ann", video["id"])] == ["charge"]
        assert not [e for e in second.ledger("ann") if "after restart" in e["note"]]


async def test_deadline_releases_the_hold(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj), deadline=0.3))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    mj.hold = True
    _, sub = await c.post("/mj/submit/imagine", {"prompt": "never finishes"})
    task = await c.until(f"/mj/task/{sub['result']}/fetch", lambda b: b["status"] == "FAILURE")
    assert task["failReason"] == "The task did not finish before its deadline."
    await relay.settled(1)
    assert relay.balance("ann") == START and relay.logs()[0]["status"] == 504
    assert [e["kind"] for e in ledger_for(relay, "ann", sub["result"])] == ["release"]


async def test_upstream_that_forgets_a_task(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    mj.hold = True
    _, sub = await c.post("/mj/submit/imagine", {"prompt": "lost"})
    mj.tasks.clear()  # the proxy restarted and lost its queue
    task = await c.until(f"/mj/task/{sub['result']}/fetch", lambda b: b["status"] == "FAILURE", timeout=15)
    assert "does not know" in task["failReason"]
    await relay.settled(1)
    assert relay.balance("ann") == START


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_loopback_hook_is_not_called(relay_factory, mj, session, host: str) -> None:
    async with FakeHook() as hook:
        relay = await relay_factory(config(mj_channel(mj)))
        relay.user("ann", quota=START)
        c = TaskClient(relay, session, relay.token("ann"))
        port = hook.url.rsplit(":", 1)[1]
        _, sub = await c.post("/mj/submit/imagine", {"prompt": "cat", "notifyHook": f"http://{host}:{port}/hook"})
        await c.until(f"/mj/task/{sub['result']}/fetch", lambda b: b["status"] == "SUCCESS")
        await wait_for(lambda: task_row(relay, sub["result"])["hook_status"], lambda s: s != "")
        assert task_row(relay, sub["result"])["hook_status"] == "refused"
        assert hook.requests == []


async def test_hook_is_called_once_when_private_hooks_are_allowed(relay_factory, mj, session) -> None:
    async with FakeHook() as hook:
        relay = await relay_factory(config(mj_channel(mj), allow_private=True))
        relay.user("ann", quota=START)
        c = TaskClient(relay, session, relay.token("ann"))
        _, sub = await c.post("/mj/submit/imagine", {"prompt": "cat", "notifyHook": hook.url + "/hook"})
        await wait_for(lambda: hook.calls, lambda calls: len(calls) == 1)
        [sent] = hook.calls
        assert sent["id"] == sub["result"] and sent["status"] == "SUCCESS" and sent["imageUrl"]
        await wait_for(lambda: task_row(relay, sub["result"])["hook_status"], lambda s: s == "sent")
        assert len(hook.calls) == 1


async def test_chat_request_for_a_task_model_is_refused(relay_factory, mj, oai) -> None:
    import openai
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("ann", quota=START)
    client = oai(relay.base, relay.token("ann"))
    with pytest.raises(openai.BadRequestError) as err:
        await client.chat.completions.create(model="mj_imagine", messages=[{"role": "user", "content": "hi"}])
    assert "/mj/submit/imagine" in str(err.value)
    await relay.settled(1)
    assert relay.balance("ann") == START and mj.requests == []
    models = [m.id for m in (await client.models.list()).data]
    assert "mj_imagine" in models


async def test_mock_channel_runs_every_task_api_offline(relay_factory, session) -> None:
    mock = "\n  - name: local-mock-tasks\n    type: mock\n    models: [mj_imagine, mj_upscale, suno_music, kling-v1]\n"
    relay = await relay_factory(config(mock))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    _, image = await c.post("/mj/submit/imagine", {"prompt": "a cat"})
    _, song = await c.post("/suno/submit/music", {"prompt": "la"})
    _, video = await c.post("/v1/video/generations", {"model": "kling-v1", "prompt": "a dog"})
    done = await c.until(f"/mj/task/{image['result']}/fetch", lambda b: b["status"] == "SUCCESS")
    _, up = await c.post("/mj/submit/action", {"taskId": image["result"], "customId": done["buttons"][0]["customId"]})
    assert up["code"] == 1
    await c.until(f"/suno/fetch/{song['data']}", lambda b: b["data"]["status"] == "SUCCESS")
    await c.until(f"/v1/video/generations/{video['id']}", lambda b: b["status"] == "completed")
    await c.until(f"/mj/task/{up['result']}/fetch", lambda b: b["status"] == "SUCCESS")
    await relay.settled(4)
    assert relay.balance("ann") == START - sum(quota(m) for m in ("mj_imagine", "mj_upscale", "suno_music",
                                                                     "kling-v1"))
