"""Failover, outlier ejection, dead keys, Retry-After, rate limits, disconnects and stalls
(issue 5), against fake upstreams on loopback.  Time is a fake clock where the behaviour
depends on it (ejection windows), never a sleep."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest

from relaykit.server.services import SERVICES
from relaykit.store import channels as channels_repo
from tests.fakes import FakeOpenAIChat

from .conftest import OpenAIFactory, StartRelay
from .harness import UPSTREAM_KEY, Relay

USD = 500_000
OTHER_KEY = "sk-upstream-second-key-0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def two_channels(a: str, b: str, *, a_keys: str = f'["{UPSTREAM_KEY}"]', extra: str = "") -> str:
    return f"""
groups: {{default: {{ratio: 1}}}}
models:
  gpt-4o: {{input: 2.5, output: 10}}
retry: {{max_attempts: 3}}
health: {{eject_after: 5, eject_seconds: 30, eject_max_seconds: 300}}
{extra}
channels:
  - {{name: primary, type: openai, base_url: "{a}", keys: {a_keys}, models: [gpt-4o], priority: 10}}
  - {{name: backup, type: openai, base_url: "{b}", keys: ["{UPSTREAM_KEY}"], models: [gpt-4o], priority: 0}}
"""


@pytest.fixture
async def second_fake() -> FakeOpenAIChat:
    fake = FakeOpenAIChat(keys={UPSTREAM_KEY})
    await fake.start()
    yield fake  # type: ignore[misc]
    await fake.stop()


def pipeline(relay: Relay):  # type: ignore[no-untyped-def]
    return relay.runner.app[SERVICES].pipeline


async def ask(c: openai.AsyncOpenAI) -> str:
    r = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    return r.choices[0].message.content or ""


async def test_failing_channel_is_ejected_and_readmitted_by_a_probe(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, second_fake: FakeOpenAIChat,
        oai: OpenAIFactory) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, second_fake.url))
    clock = FakeClock()
    pipeline(relay).health.clock = clock
    relay.user("ann", quota=10 * USD)
    c = oai(relay.base, relay.token("ann"))
    fake_openai.mode = "status:500"
    answers: list[str] = []
    for _ in range(10):  # 100 requests in waves of 10 concurrent
        answers += await asyncio.gather(*(ask(c) for _ in range(10)))
    assert len(answers) == 100 and all(a.startswith("Hello from fake-openai!") for a in answers)
    await relay.settled(100)
    # the primary saw failures until it was ejected: 5 consecutive, plus those already in flight
    failed_on_primary = len(fake_openai.requests)
    assert 5 <= failed_on_primary <= 20
    for _ in range(10):
        await ask(c)
    assert len(fake_openai.requests) == failed_on_primary  # ejected: nothing more reaches it
    # the primary recovers; after its window (30 s) the next request probes it and re-admits it
    fake_openai.mode = "ok"
    clock.now += 31
    await ask(c)
    assert len(fake_openai.requests) == failed_on_primary + 1
    await ask(c)
    assert len(fake_openai.requests) == failed_on_primary + 2
    await relay.settled(112)
    logs = relay.logs()
    attempts = [json.loads(lg["attempts"]) for lg in logs]
    assert any([a["channel"] for a in att] == ["primary", "backup"] for att in attempts)
    assert all(lg["status"] == 200 for lg in logs)


async def test_ejection_doubles_and_never_strands_the_last_channel(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, fake_openai.url).replace(
        "  - {name: backup", "  - {name: backup, enabled: false"))
    health = pipeline(relay).health
    clock = FakeClock()
    health.clock = clock
    relay.user("bo", quota=10 * USD)
    c = oai(relay.base, relay.token("bo"))
    fake_openai.mode = "status:503"
    for _ in range(6):
        with pytest.raises(openai.InternalServerError):
            await ask(c)
    # ejected after 5, yet as the only channel it is still tried
    assert len(fake_openai.requests) == 6
    assert health.snapshot()["primary"]["ejected_for"] == 30.0
    clock.now += 31  # the window ends; the probe fails: ejected again for twice as long
    with pytest.raises(openai.InternalServerError):
        await ask(c)
    assert health.snapshot()["primary"]["ejected_for"] == 60.0
    fake_openai.mode = "ok"
    assert (await ask(c)).startswith("Hello")
    assert health.snapshot()["primary"]["ejections"] == 0


async def test_a_refused_key_is_disabled_and_the_next_key_serves(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, second_fake: FakeOpenAIChat,
        oai: OpenAIFactory) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, second_fake.url,
                                             a_keys=f'["{OTHER_KEY}", "{UPSTREAM_KEY}"]'))
    relay.user("cy", quota=10 * USD)
    c = oai(relay.base, relay.token("cy"))
    for _ in range(4):
        assert (await ask(c)).startswith("Hello")
    seen = [r.headers["Authorization"] for r in fake_openai.requests]
    assert seen.count(f"Bearer {OTHER_KEY}") == 1  # refused once, never used again
    assert len(second_fake.requests) == 0  # the primary's second key served everything
    states = relay.store.tx(channels_repo.states)
    dead = [v for k, v in states.items() if k.startswith("primary#")]
    assert len(dead) == 1 and "401" in dead[0]["reason"]
    assert OTHER_KEY not in json.dumps(states)
    await relay.settled(4)


async def test_upstream_429_cools_the_channel_down_and_passes_retry_after(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, second_fake: FakeOpenAIChat,
        oai: OpenAIFactory) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, second_fake.url).replace(
        "  - {name: backup", "  - {name: backup, enabled: false"))
    relay.user("di", quota=10 * USD)
    c = oai(relay.base, relay.token("di"))
    fake_openai.mode = "status:429:7"
    with pytest.raises(openai.RateLimitError) as err:
        await ask(c)
    assert err.value.response.headers["Retry-After"] == "7"
    assert len(fake_openai.requests) == 1  # the same channel-key is never tried twice
    await relay.settled(1)
    assert relay.balance("di") == 10 * USD


async def test_rate_limits_refuse_with_headers(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                               oai: OpenAIFactory) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, fake_openai.url))
    relay.user("ed", quota=10 * USD)
    key = relay.token("ed")
    relay.store.tx(lambda t: t.Token.update(rpm=3).execute())
    relay.store.cache.load_now()
    c = oai(relay.base, key)
    for _ in range(3):
        await ask(c)
    with pytest.raises(openai.RateLimitError) as err:
        await ask(c)
    h = err.value.response.headers
    assert int(h["Retry-After"]) >= 1
    assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert len(fake_openai.requests) == 3
    await relay.settled(3)


async def test_concurrent_request_limit(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                        oai: OpenAIFactory) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, fake_openai.url,
                                             extra="limits: {user_concurrency: 2}"))
    relay.user("fay", quota=10 * USD)
    c = oai(relay.base, relay.token("fay"))
    fake_openai.mode = "slow_stream:0.2:5"

    async def one() -> str:
        try:
            stream = await c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}],
                                                     stream=True)
            async for _ in stream:
                pass
            return "ok"
        except openai.RateLimitError:
            return "429"

    outcomes = await asyncio.gather(*(one() for _ in range(5)))
    assert sorted(outcomes) == ["429", "429", "429", "ok", "ok"]
    await relay.settled(2)


async def test_client_disconnect_mid_stream_cancels_upstream_and_bills_once(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat) -> None:
    relay = await relay_factory(two_channels(fake_openai.url, fake_openai.url))
    relay.user("gus", quota=10 * USD)
    key = relay.token("gus")
    fake_openai.mode = "slow_stream:0.1:50"
    body = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "tell me"}]}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(relay.base + "/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})
        got = 0
        async for line in resp.content:
            if line.startswith(b"data: {"):
                got += 1
            if got == 10:
                break
        closed_at = loop.time()
        resp.close()
    await fake_openai.wait_cancelled(1, timeout=1.0)
    assert loop.time() - closed_at < 1.0
    await relay.settled(1)
    charges = [e for e in relay.ledger("gus") if e["kind"] == "charge"]
    assert len(charges) == 1
    log = relay.logs()[0]
    assert log["status"] == 499 and log["estimated"]
    full = 10 * USD - relay.balance("gus")
    assert 0 < full and log["completion_tokens"] < 50


async def test_stall_mid_stream_ends_with_an_error_event(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                                         oai: OpenAIFactory) -> None:
    config = two_channels(fake_openai.url, fake_openai.url).replace(
        "priority: 10}", "priority: 10, timeouts: {connect: 2, first_byte: 2, idle: 0.5}}")
    relay = await relay_factory(config)
    relay.user("hal", quota=10 * USD)
    fake_openai.mode = "stall_mid_stream:30"
    stream = await oai(relay.base, relay.token("hal")).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True)
    with pytest.raises(openai.APIError, match="sent nothing for 0.5 seconds"):
        async for _ in stream:
            pass
    await relay.settled(1)
    log = relay.logs()[0]
    assert log["status"] == 504 and log["quota"] > 0  # billed for what was delivered
