"""Realtime end to end: the openai SDK's realtime connection through relaykit to a fake
upstream socket (text in, text out, each ``response.done`` billed as it passes), the
browser's sub-protocol authentication, refusals before the upgrade, a session whose
balance runs out (closed with an error event) and clean closes on both sides."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosedError

from .conftest import OpenAIFactory
from .harness import UPSTREAM_KEY
from .media_support import Media, cost, media  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio
PRICE_IN, PRICE_OUT, PRICE_AUDIO_OUT = Decimal(4), Decimal(16), Decimal(64)  # gpt-realtime, USD per 1M


def response_cost(said: list[str], answer: str, audio_out: int = 0) -> int:
    inp = sum(len(s.split()) for s in said)
    return cost((PRICE_IN * inp + PRICE_OUT * len(answer.split()) + PRICE_AUDIO_OUT * audio_out) / 1_000_000)


def user_text(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


async def until_closed(media: Media) -> None:
    for _ in range(200):
        if media.openai.active_sockets == 0 and media.relay.open_holds() == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the upstream socket or a hold stayed open")


async def test_openai_sdk_session_text_in_text_out_billed_per_response(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("ann"))
    answers: list[str] = []
    async with c.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        for text in ("hello relay", "and again please"):
            await conn.conversation.item.create(item=user_text(text))
            await conn.response.create()
            deltas: list[str] = []
            async for event in conn:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
                elif event.type == "response.done":
                    assert event.response.usage is not None and event.response.usage.output_tokens
                    break
            answers.append("".join(deltas))
    assert answers == ["Hello from fake-realtime! You said: hello relay",
                       "Hello from fake-realtime! You said: and again please"]
    session = media.openai.sessions[0]
    assert session["model"] == "gpt-realtime"
    assert session["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert session["received"] == ["session.update", "conversation.item.create", "response.create",
                                   "conversation.item.create", "response.create"]
    await until_closed(media)
    assert media.charges("ann") == [response_cost(["hello relay"], answers[0]),
                                    response_cost(["hello relay", "and again please"], answers[1])]
    logs = media.relay.logs()
    assert [(lg["dialect"], lg["status"], lg["channel"]) for lg in logs] == [("realtime", 200, "openai-media")] * 2
    assert logs[1]["prompt_tokens"] == 5


async def test_subprotocol_auth_and_refusals_before_the_upgrade(media: Media) -> None:
    key = media.key("bea")
    url = media.relay.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, protocols=("realtime", f"openai-insecure-api-key.{key}",
                                                "openai-beta.realtime-v1")) as ws:
            assert ws.protocol == "realtime"
            first = json.loads((await ws.receive()).data)
            assert first["type"] == "session.created"
            await ws.send_str(json.dumps({"type": "conversation.item.create", "item": user_text("hi")}))
            assert json.loads((await ws.receive()).data)["type"] == "conversation.item.added"
        # the client closed: the relay closes the upstream too, and nothing is charged
        await until_closed(media)
        assert media.charges("bea") == []

        for query, headers, status in (
                ("model=gpt-realtime", {"Authorization": "Bearer sk-wrong"}, 401),
                ("model=no-such", {"Authorization": f"Bearer {key}"}, 404),
                ("", {"Authorization": f"Bearer {key}"}, 400),
                ("model=whisper-1", {"Authorization": f"Bearer {key}"}, 400)):  # priced per second
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await s.ws_connect(url.split("?")[0] + "?" + query, headers=headers)
            assert info.value.status == status, query
        async with s.get(url.replace("ws://", "http://"), headers={"Authorization": "Bearer sk-wrong"}) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_api_key"


async def test_a_session_that_spends_its_balance_is_closed_with_an_error_event(media: Media,
                                                                              oai: OpenAIFactory) -> None:
    # one response holds 4096 prompt + 4096 output tokens at the audio rates: 196 608 quota
    media.relay.user("cy", quota=220_000)
    media.openai.audio_tokens = 1000  # each response costs about 32 000 quota
    c = oai(media.relay.base, media.relay.token("cy"))
    events: list[Any] = []
    with pytest.raises(ConnectionClosedError) as closed:
        async with c.realtime.connect(model="gpt-realtime") as conn:
            await conn.conversation.item.create(item=user_text("spend it"))
            await conn.response.create()
            async for event in conn:
                events.append(event)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    types = [e.type for e in events]
    assert types[-2:] == ["response.done", "error"]
    assert events[-1].error.code == "insufficient_quota"
    await until_closed(media)
    answer = "Hello from fake-realtime! You said: spend it"
    assert media.charges("cy") == [response_cost(["spend it"], answer, audio_out=1000)]
    assert media.relay.balance("cy") == 220_000 - media.charges("cy")[0]


async def test_no_balance_for_the_first_response_is_refused_with_402(media: Media) -> None:
    media.relay.user("dan", quota=1000)
    key = media.relay.token("dan")
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await s.ws_connect(media.relay.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime",
                               headers={"Authorization": f"Bearer {key}"})
    assert info.value.status == 402
    assert media.openai.sessions == []


async def test_the_upstream_closing_closes_the_client(media: Media) -> None:
    key = media.key("eve")
    url = media.relay.url.replace("http://", "ws://") + "/v1/realtime?model=gpt-realtime"
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, headers={"Authorization": f"Bearer {key}"}) as ws:
            await ws.receive()  # session.created
            await media.openai.stop()  # the upstream goes away mid-session
            msg = await ws.receive()
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    for _ in range(100):
        if media.relay.open_holds() == 0:
            break
        await asyncio.sleep(0.02)
    assert media.relay.open_holds() == 0 and media.charges("eve") == []
