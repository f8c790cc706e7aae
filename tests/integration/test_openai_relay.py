"""The OpenAI chat path end to end: the official openai SDK -> relaykit -> a fake
OpenAI upstream (or the built-in mock channel), with billing and logs checked."""

from __future__ import annotations

import io
import json
from decimal import ROUND_CEILING, Decimal

import aiohttp
import openai
import pytest

from relaykit.server.services import SERVICES
from tests.fakes import FakeOpenAIChat

from .conftest import OpenAIFactory, StartRelay, openai_config
from .harness import UPSTREAM_KEY

USD = 500_000


async def test_plain_completion_through_fake_upstream(relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("alice", quota=10 * USD)
    key = relay.token("alice")
    resp = await oai(relay.base, key).chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "hello relay"}], temperature=0.5, seed=7)
    assert resp.choices[0].message.content == "Hello from fake-openai! You said: hello relay"
    sent = fake_openai.requests[-1]
    # model_map renamed the model; every other field reached the upstream untouched
    assert sent.json["model"] == "gpt-4o"
    assert sent.json["temperature"] == 0.5 and sent.json["seed"] == 7
    # the upstream saw the operator's key, never the customer's
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert key not in json.dumps(dict(sent.headers))
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == fake_openai.last_usage["prompt_tokens"]
    assert resp.usage.completion_tokens == fake_openai.last_usage["completion_tokens"]
    await relay.settled(1)
    log = relay.logs()[0]
    assert (log["model"], log["upstream_model"], log["channel"]) == ("gpt-4", "gpt-4o", "fake-openai")
    assert log["prompt_tokens"] == resp.usage.prompt_tokens and not log["estimated"] and not log["stream"]


async def test_stream_has_usage_only_when_the_client_asked(relay_factory: StartRelay,
                                                           fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("alice", quota=10 * USD)
    c = oai(relay.base, relay.token("alice"))
    msgs = [{"role": "user", "content": "stream this please"}]

    chunks = [ch async for ch in await c.chat.completions.create(model="gpt-4o", messages=msgs, stream=True)]
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "Hello from fake-openai! You said: stream this please"
    assert all(ch.choices for ch in chunks), "a usage-only chunk reached a client that did not ask for it"
    # relaykit always asks the upstream for usage so it can bill exactly
    assert fake_openai.requests[-1].json["stream_options"] == {"include_usage": True}

    chunks = [ch async for ch in await c.chat.completions.create(
        model="gpt-4o", messages=msgs, stream=True, stream_options={"include_usage": True})]
    usage_chunks = [ch for ch in chunks if not ch.choices]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].usage.completion_tokens == fake_openai.last_usage["completion_tokens"]

    await relay.settled(2)
    logs = relay.logs()
    assert [lg["stream"] for lg in logs] == [True, True]
    assert all(not lg["estimated"] for lg in logs)
    assert all(lg["completion_tokens"] == fake_openai.last_usage["completion_tokens"] for lg in logs)


async def test_mock_channel_plain_and_streamed(relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("bob", quota=USD)
    c = oai(relay.base, relay.token("bob"))
    resp = await c.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "ping"}])
    assert resp.choices[0].message.content == "This is the relaykit mock model. You said: ping"
    assert resp.usage is not None and resp.usage.completion_tokens > 0
    stream = await c.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "ping"}],
                                             stream=True, stream_options={"include_usage": True})
    chunks = [ch async for ch in stream]
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == resp.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    assert fake_openai.requests == []  # the mock never calls out
    await relay.settled(2)


async def test_models_list_shows_exactly_the_tokens_models(relay_factory: StartRelay,
                                                           fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("carol", quota=USD)
    everything = await oai(relay.base, relay.token("carol")).models.list()
    assert sorted(m.id for m in everything.data) == ["fixed", "gpt-4", "gpt-4o", "gpt-4o-mini", "mock-gpt"]
    limited = await oai(relay.base, relay.token("carol", models=["gpt-4o", "mock-gpt"])).models.list()
    assert sorted(m.id for m in limited.data) == ["gpt-4o", "mock-gpt"]
    # the azure-low group has no mock channel
    relay.user("dave", quota=USD, group="azure-low")
    cheap = await oai(relay.base, relay.token("dave")).models.list()
    assert "mock-gpt" not in {m.id for m in cheap.data} and "gpt-4o" in {m.id for m in cheap.data}


def expected_quota(group_ratio: str, model_ratio: str, completion_ratio: str, prompt: int, completion: int) -> int:
    value = Decimal(group_ratio) * Decimal(model_ratio) * (prompt + completion * Decimal(completion_ratio))
    return int(value.to_integral_value(rounding=ROUND_CEILING))


async def test_charge_follows_the_formula_with_group_and_completion_ratios(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("erin", quota=10 * USD, group="azure-low")
    before = relay.balance("erin")
    resp = await oai(relay.base, relay.token("erin")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "price me with a few words"}])
    assert resp.usage is not None
    await relay.settled(1)
    want = expected_quota("0.3", "0.075", "4", resp.usage.prompt_tokens, resp.usage.completion_tokens)
    assert want > 0
    assert before - relay.balance("erin") == want
    charges = [e for e in relay.ledger("erin") if e["kind"] == "charge"]
    assert [c["amount"] for c in charges] == [-want]
    assert relay.logs()[0]["quota"] == want


async def test_cache_read_tokens_are_billed_at_their_own_ratio(relay_factory: StartRelay,
                                                              fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("gail", quota=10 * USD)
    fake_openai.usage_override = {"prompt_tokens": 1000, "completion_tokens": 10, "cache_read_tokens": 600}
    await oai(relay.base, relay.token("gail")).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "cached"}])
    await relay.settled(1)
    # gpt-4o: input $2.50 -> ratio 1.25, output x4, cache read x0.5; 400 uncached + 600 cached
    want = int((Decimal("1.25") * (400 + 10 * 4 + 600 * Decimal("0.5"))).to_integral_value(rounding=ROUND_CEILING))
    log = relay.logs()[0]
    assert (log["prompt_tokens"], log["cache_read_tokens"], log["quota"]) == (1000, 600, want)


async def test_hundred_concurrent_requests_on_a_balance_for_three(relay_factory: StartRelay,
                                                                 fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    import asyncio
    relay = await relay_factory(openai_config(fake_openai.url))
    per_call = USD // 100  # fixed: $0.01 per call
    relay.user("frank", quota=3 * per_call)
    c = oai(relay.base, relay.token("frank"))

    async def one() -> str:
        try:
            await c.chat.completions.create(model="fixed", messages=[{"role": "user", "content": "hi"}])
            return "ok"
        except openai.APIStatusError as exc:
            return f"{exc.status_code}:{exc.code}"

    outcomes = await asyncio.gather(*(one() for _ in range(100)))
    assert outcomes.count("ok") == 3
    assert outcomes.count("402:insufficient_quota") == 97
    assert len(fake_openai.requests) == 3
    await relay.settled(3)
    assert relay.balance("frank") == 0
    assert [e["amount"] for e in relay.ledger("frank") if e["kind"] == "charge"] == [-per_call] * 3


async def test_failed_upstream_costs_nothing(relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("hank", quota=USD)
    fake_openai.mode = "status:500"
    with pytest.raises(openai.InternalServerError) as info:
        await oai(relay.base, relay.token("hank")).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502
    await relay.settled(1)
    assert relay.balance("hank") == USD
    assert [e["kind"] for e in relay.ledger("hank")] == ["release", "topup"]
    assert relay.logs()[0]["status"] == 502 and relay.logs()[0]["quota"] == 0


async def test_stream_without_upstream_usage_is_estimated(relay_factory: StartRelay,
                                                          fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("ivy", quota=USD)
    fake_openai.mode = "no_usage"
    stream = await oai(relay.base, relay.token("ivy")).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "count me"}], stream=True,
        stream_options={"include_usage": True})
    text = "".join([ch.choices[0].delta.content or "" async for ch in stream if ch.choices])
    assert text.startswith("Hello from fake-openai!")
    await relay.settled(1)
    log = relay.logs()[0]
    assert log["estimated"] and log["completion_tokens"] > 0 and log["quota"] > 0
    assert USD - relay.balance("ivy") == log["quota"]


async def test_errors_in_openai_format(relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url) + "server: {max_body_mb: 1}\n")
    relay.user("judy", quota=10)  # 10 quota units: too little for gpt-4o's hold
    key = relay.token("judy", models=["gpt-4o", "mock-gpt"])
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.AuthenticationError) as e401:
        await oai(relay.base, "sk-not-a-real-key").chat.completions.create(model="gpt-4o", messages=msgs)
    assert e401.value.status_code == 401 and "sk-not-a-real-key" not in str(e401.value.body)
    with pytest.raises(openai.PermissionDeniedError):
        await oai(relay.base, key).chat.completions.create(model="gpt-4o-mini", messages=msgs)
    with pytest.raises(openai.NotFoundError) as e404:
        await oai(relay.base, key).chat.completions.create(model="no-such-model", messages=msgs)
    assert e404.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as e402:
        await oai(relay.base, key).chat.completions.create(model="gpt-4o", messages=msgs)
    assert e402.value.status_code == 402 and e402.value.code == "insufficient_quota"
    with pytest.raises(openai.BadRequestError):
        await oai(relay.base, key).chat.completions.create(model="gpt-4o", messages=[])
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {key}"}
        async with http.post(relay.base + "/chat/completions", data=b"{not json", headers=auth) as r:
            assert r.status == 400
            assert (await r.json())["error"]["message"] == "The request body is not valid JSON."
        async with http.post(relay.base + "/chat/completions", data=io.BytesIO(b"x" * (1024 * 1024 + 1)), headers=auth) as r:
            assert r.status == 413
            assert "larger than the relay accepts" in (await r.json())["error"]["message"]
    assert fake_openai.requests == []
    assert relay.balance("judy") == 10


async def test_upstream_client_errors_are_passed_on_without_retry(relay_factory: StartRelay,
                                                                  fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("kim", quota=USD)
    fake_openai.mode = "status:400"
    with pytest.raises(openai.BadRequestError):
        await oai(relay.base, relay.token("kim")).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert len(fake_openai.requests) == 1
    fake_openai.mode = "echo_key_401"
    with pytest.raises(openai.InternalServerError) as err:
        await oai(relay.base, relay.token("kim")).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert UPSTREAM_KEY not in str(err.value.body) and UPSTREAM_KEY[-12:] not in str(err.value.body)
    await relay.settled(2)
    assert relay.balance("kim") == USD


async def test_token_checks(relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory) -> None:
    import time
    from relaykit.store import accounts
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("leo", quota=USD)
    msgs = [{"role": "user", "content": "hi"}]
    expired = relay.token("leo", expires_at=time.time() - 1)
    with pytest.raises(openai.AuthenticationError, match="expired"):
        await oai(relay.base, expired).chat.completions.create(model="mock-gpt", messages=msgs)
    elsewhere = relay.token("leo", ips=["10.0.0.0/8"])
    with pytest.raises(openai.PermissionDeniedError, match="IP address"):
        await oai(relay.base, elsewhere).chat.completions.create(model="mock-gpt", messages=msgs)
    here = relay.token("leo", ips=["127.0.0.0/8"])
    ok = await oai(relay.base, here).chat.completions.create(model="mock-gpt", messages=msgs)
    assert ok.choices[0].message.content
    capped = relay.token("leo", quota=5)
    with pytest.raises(openai.APIStatusError, match="token's quota") as exhausted:
        await oai(relay.base, capped).chat.completions.create(model="mock-gpt", messages=msgs)
    assert exhausted.value.status_code == 402
    relay.store.tx(lambda t: accounts.set_user_status(t, "leo", "disabled"))
    relay.store.cache.load_now()
    with pytest.raises(openai.PermissionDeniedError, match="disabled"):
        await oai(relay.base, here).chat.completions.create(model="mock-gpt", messages=msgs)
    await relay.settled(1)


async def test_stalled_upstream_becomes_504(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                            oai: OpenAIFactory) -> None:
    config = openai_config(fake_openai.url).replace(
        "    model_map: {gpt-4: gpt-4o}\n", "    model_map: {gpt-4: gpt-4o}\n    timeouts: {connect: 2, first_byte: 0.5, idle: 5}\n")
    relay = await relay_factory(config)
    relay.user("olga", quota=USD)
    fake_openai.mode = "stall_before_headers:30"
    with pytest.raises(openai.APIStatusError) as err:
        await oai(relay.base, relay.token("olga")).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 504
    await relay.settled(1)
    assert relay.balance("olga") == USD


async def test_chunked_body_over_the_limit_is_413(relay_factory: StartRelay, fake_openai: FakeOpenAIChat) -> None:
    relay = await relay_factory(openai_config(fake_openai.url) + "server: {max_body_mb: 1}\n")
    relay.user("pete", quota=USD)
    key = relay.token("pete")

    async def body():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MB with no Content-Length

    async with aiohttp.ClientSession() as http:
        async with http.post(relay.base + "/chat/completions", data=body(),
                             headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "request_too_large"


async def test_overhead_header_only_when_enabled(relay_factory: StartRelay, fake_openai: FakeOpenAIChat) -> None:
    relay = await relay_factory(openai_config(fake_openai.url) + "server: {expose_overhead: true}\n")
    relay.user("quin", quota=USD)
    key = relay.token("quin")
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
    async with aiohttp.ClientSession() as http:
        for stream in (False, True):
            async with http.post(relay.base + "/chat/completions", json={**body, "stream": stream},
                                 headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 200
                overhead = float(r.headers["x-relaykit-overhead-ms"])
                await r.read()
            assert 0 <= overhead < 1000
    await relay.settled(2)
    relay.settings = relay.settings  # the same server with the option off answers without it
    pipeline = relay.runner.app[SERVICES].pipeline
    from dataclasses import replace
    pipeline.settings = replace(pipeline.settings, server=replace(pipeline.settings.server, expose_overhead=False))
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.base + "/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200 and "x-relaykit-overhead-ms" not in r.headers
    await relay.settled(3)
