"""Issue 7, Midjourney-proxy API: imagine -> fetch -> change (upscale) billed once each,
refusals and failures cost nothing (hold + release in the ledger), foreign and unknown ids
are 404 in the proxy's own shape, the image proxy serves the upstream's bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakes_tasks import PNG, FakeMidjourney
from tests.fakes_tasks.support import TaskClient, channel, config, ledger_for, quota, task_row

MJ_KEY = "mj-upstream-secret-CANARY"
START = 1_000_000


@pytest.fixture
async def mj() -> AsyncIterator[FakeMidjourney]:
    async with FakeMidjourney(MJ_KEY) as fake:
        yield fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def mj_channel(fake: FakeMidjourney, name: str = "mj-1", priority: int = 0) -> str:
    return channel(name, "midjourney", fake.url, MJ_KEY, ["mj_imagine", "mj_upscale", "mj_variation", "mj_reroll",
                                                          "mj_blend", "mj_describe"], priority)


async def test_imagine_fetch_upscale_each_billed_once(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"), header="mj-api-secret")

    status, sub = await c.post("/mj/submit/imagine", {"prompt": "a cat --ar 16:9", "state": "s1"})
    assert status == 200 and sub["code"] == 1 and sub["description"] == "Submit success"
    tid = sub["result"]
    assert tid.isdigit() and tid not in mj.tasks  # relaykit's own id, not the upstream's
    assert relay.balance("ann") == START - quota("mj_imagine")  # held at submit
    assert mj.submitted()[0].body["prompt"] == "a cat --ar 16:9"

    task = await c.until(f"/mj/task/{tid}/fetch", lambda b: b["status"] == "SUCCESS")
    assert task["id"] == tid and task["action"] == "IMAGINE" and task["progress"] == "100%"
    assert task["prompt"] == "a cat --ar 16:9" and task["state"] == "s1"
    assert task["submitTime"] > 10**12 and task["finishTime"] >= task["submitTime"]  # milliseconds
    assert task["imageUrl"].endswith(".png") and len(task["buttons"]) == 4
    up_id = task_row(relay, tid)["upstream_id"]

    status, ch = await c.post("/mj/submit/change", {"taskId": tid, "action": "UPSCALE", "index": 1})
    assert status == 200 and ch["code"] == 1
    change_body = mj.submitted()[-1]
    assert change_body.path == "/mj/submit/change" and change_body.body["taskId"] == up_id
    up = await c.until(f"/mj/task/{ch['result']}/fetch", lambda b: b["status"] == "SUCCESS")
    assert up["action"] == "UPSCALE"

    status, act = await c.post("/mj/submit/action", {"taskId": tid, "customId": task["buttons"][1]["customId"]})
    assert status == 200 and act["code"] == 1
    assert mj.submitted()[-1].path == "/mj/submit/action"
    await c.until(f"/mj/task/{act['result']}/fetch", lambda b: b["status"] == "SUCCESS")

    await relay.settled(3)
    assert relay.balance("ann") == START - quota("mj_imagine") - 2 * quota("mj_upscale")
    charges = [e for e in relay.ledger("ann") if e["kind"] == "charge"]
    assert sorted(-e["amount"] for e in charges) == sorted([quota("mj_imagine"), quota("mj_upscale"),
                                                             quota("mj_upscale")])
    assert {row["model"] for row in relay.logs()} == {"mj_imagine", "mj_upscale"}

    status, listed = await c.post("/mj/task/list-by-condition", {"ids": [tid, ch["result"], "nope"]})
    assert status == 200 and [t["id"] for t in listed] == [tid, ch["result"]]

    status, ctype, image = await c.raw(f"/mj/image/{tid}")
    assert status == 200 and ctype == "image/png" and image == PNG


async def test_polls_are_answered_from_the_database(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj), poll=5))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    _, sub = await c.post("/mj/submit/imagine", {"prompt": "a dog"})
    for _ in range(20):
        status, got = await c.get(f"/mj/task/{sub['result']}/fetch")
        assert status == 200 and got["status"] == "SUBMITTED"
    assert sum(mj.polls.values()) == 0  # twenty client polls, no upstream call
    await relay.runner.cleanup()  # still open: the hold stays for the next start
    assert relay.open_holds() == 1
    relay.store.tx(lambda t: t.Task.update(deadline_at=0).execute())
    relay2 = await relay_factory(config(mj_channel(mj), poll=0.03))
    await TaskClient(relay2, session, c.key).until(f"/mj/task/{sub['result']}/fetch",
                                                   lambda b: b["status"] == "FAILURE")


async def test_refused_prompt_costs_nothing(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    mj.refuse = [24]
    status, sub = await c.post("/mj/submit/imagine", {"prompt": "something banned"})
    assert status == 200 and sub == {"code": 24, "description": "Banned prompt", "result": None, "properties": {}}
    assert relay.balance("ann") == START and relay.open_holds() == 0
    [release] = [e for e in relay.ledger("ann") if e["kind"] == "release"]
    assert release["amount"] == 0 and str(quota("mj_imagine")) in release["note"]


async def test_full_queue_goes_to_the_next_channel(relay_factory, mj, session) -> None:
    async with FakeMidjourney(MJ_KEY) as second:
        relay = await relay_factory(config(mj_channel(mj, "mj-a", priority=10), mj_channel(second, "mj-b")))
        relay.user("ann", quota=START)
        c = TaskClient(relay, session, relay.token("ann"))
        mj.refuse = [23]
        status, sub = await c.post("/mj/submit/imagine", {"prompt": "a cat"})
        assert status == 200 and sub["code"] == 1
        assert len(second.tasks) == 1 and task_row(relay, sub["result"])["channel"] == "mj-b"
        await c.until(f"/mj/task/{sub['result']}/fetch", lambda b: b["status"] == "SUCCESS")


async def test_failed_task_returns_the_balance(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("ann", quota=START)
    c = TaskClient(relay, session, relay.token("ann"))
    mj.outcome = "failure"
    _, sub = await c.post("/mj/submit/imagine", {"prompt": "a cat"})
    assert relay.balance("ann") == START - quota("mj_imagine")
    task = await c.until(f"/mj/task/{sub['result']}/fetch", lambda b: b["status"] == "FAILURE")
    assert task["failReason"] == "Discord said no"
    await relay.settled(1)
    assert relay.balance("ann") == START
    entries = ledger_for(relay, "ann", sub["result"])
    assert [e["kind"] for e in entries] == ["release"]
    assert entries[0]["note"] == f"hold of {quota('mj_imagine')} released, nothing charged"
    assert relay.logs()[0]["quota"] == 0 and relay.logs()[0]["status"] == 502


async def test_foreign_and_unknown_ids_are_404_in_the_proxy_shape(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("ann", quota=START)
    relay.user("bob", quota=START)
    ann = TaskClient(relay, session, relay.token("ann"))
    bob = TaskClient(relay, session, relay.token("bob"), header="mj-api-secret")
    _, sub = await ann.post("/mj/submit/imagine", {"prompt": "ann's cat"})
    await ann.until(f"/mj/task/{sub['result']}/fetch", lambda b: b["status"] == "SUCCESS")

    for path in (f"/mj/task/{sub['result']}/fetch", "/mj/task/123456/fetch", f"/mj/image/{sub['result']}"):
        status, body = await bob.get(path)
        assert status == 404 and body["code"] == 3 and body["result"] is None, path
        assert "There is no task" in body["description"]
    status, body = await bob.post("/mj/submit/change", {"taskId": sub["result"], "action": "UPSCALE", "index": 1})
    assert status == 404 and body["code"] == 3
    status, listed = await bob.post("/mj/task/list-by-condition", {"ids": [sub["result"]]})
    assert status == 200 and listed == []
    assert relay.balance("bob") == START

    status, body = await TaskClient(relay, session, "sk-wrong").get(f"/mj/task/{sub['result']}/fetch")
    assert status == 401 and body["code"] == 4
    status, body = await bob.post("/mj/submit/imagine", {"prompt": 7})
    assert status == 400 and body["code"] == 4 and "prompt" in body["description"]


async def test_no_balance_no_submit(relay_factory, mj, session) -> None:
    relay = await relay_factory(config(mj_channel(mj)))
    relay.user("poor", quota=quota("mj_imagine") - 1)
    c = TaskClient(relay, session, relay.token("poor"))
    status, body = await c.post("/mj/submit/imagine", {"prompt": "a cat"})
    assert status == 402 and body["code"] == 4
    assert mj.submitted() == [] and relay.store.tx(lambda t: t.Task.select().count()) == 0
