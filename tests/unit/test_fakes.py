"""The fake upstreams speak each vendor's wire format well enough for the
official SDKs, and their fault modes do what the reliability tests expect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from tests.fakes import (
    REASONING_TEXT,
    FakeAnthropic,
    FakeGemini,
    FakeOpenAIChat,
    FakeOpenAIResponses,
    FakeUpstream,
    count_words,
)

WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def parse_sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event, data) pairs of an SSE body; accepts \\n and \\r\\n framing."""
    text = raw.decode().replace("\r\n", "\n")
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        events.append((event, "\n".join(data)))
    return events


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def started(fake: FakeUpstream) -> AsyncIterator[FakeUpstream]:
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def openai_fake() -> AsyncIterator[FakeUpstream]:
    async for fake in started(FakeOpenAIResponses()):
        yield fake


@pytest.fixture
async def anthropic_fake() -> AsyncIterator[FakeUpstream]:
    async for fake in started(FakeAnthropic()):
        yield fake


@pytest.fixture
async def gemini_fake() -> AsyncIterator[FakeUpstream]:
    async for fake in started(FakeGemini()):
        yield fake


# --------------------------------------------------------------------- rules


def test_count_words_rule() -> None:
    assert count_words("") == 0
    assert count_words(None) == 0
    assert count_words("  Weather in\n Paris?  ") == 3
    assert count_words(REASONING_TEXT) == 9


def test_modes_are_validated() -> None:
    fake = FakeOpenAIChat()
    fake.mode = "status:429:2"
    fake.mode = "slow_stream:0.01:5"
    for bad in ("nope", "status", "status:abc", "stall_before_headers:soon"):
        with pytest.raises(ValueError):
            fake.mode = bad


# -------------------------------------------------------------- OpenAI chat


async def test_openai_chat_json_shape_and_usage(openai_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "How are you today?"}]},
        ],
    }
    async with session.post(
        openai_fake.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k1"}
    ) as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        data = await r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "gpt-4o"
    choice = data["choices"][0]
    answer = "Hello from fake-openai! You said: How are you today?"
    assert choice["message"] == {"role": "assistant", "content": answer, "refusal": None}
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] == 2 + 4
    assert data["usage"]["completion_tokens"] == count_words(answer) == 9
    assert data["usage"]["total_tokens"] == 15
    assert openai_fake.last_usage is not None and openai_fake.last_usage["total_tokens"] == 15
    rec = openai_fake.requests[-1]
    assert (rec.method, rec.path, rec.mode) == ("POST", "/v1/chat/completions", "ok")
    assert rec.headers["authorization"] == rec.headers["Authorization"] == "Bearer k1"
    assert rec.json == body and json.loads(rec.body) == body


@pytest.mark.parametrize("ask_usage", [False, True])
async def test_openai_chat_stream_usage_chunk_only_when_asked(
    openai_fake: FakeUpstream, session: aiohttp.ClientSession, ask_usage: bool
) -> None:
    body: dict[str, Any] = {"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if ask_usage:
        body["stream_options"] = {"include_usage": True}
    async with session.post(openai_fake.url + "/v1/chat/completions", json=body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = parse_sse(await r.read())
    assert all(event is None for event, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello from fake-openai! You said: hi"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 6
    if ask_usage:
        *rest, last = chunks
        assert all(c["usage"] is None for c in rest)
        assert last["choices"] == []
        assert last["usage"]["prompt_tokens"] == 1 and last["usage"]["completion_tokens"] == 6
        assert rest[-1]["choices"][0]["finish_reason"] == "stop"
    else:
        assert all("usage" not in c for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"][0]["delta"] == {}


async def test_openai_sdk_streams_text_and_usage(openai_fake: FakeUpstream) -> None:
    openai = pytest.importorskip("openai")
    async with openai.AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="sk-test", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "tell me a story"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if chunk.usage:
                usage = chunk.usage
        models = [m.id async for m in client.models.list()]
    assert "".join(pieces) == "Hello from fake-openai! You said: tell me a story"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 9)
    assert "gpt-4o" in models
    assert openai_fake.requests[0].headers["authorization"] == "Bearer sk-test"


async def test_openai_sdk_tool_call_then_tool_result(openai_fake: FakeUpstream) -> None:
    openai = pytest.importorskip("openai")
    messages: list[dict[str, Any]] = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with openai.AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="k", max_retries=0) as client:
        async with client.chat.completions.stream(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL_OPENAI]
        ) as stream:
            arg_deltas = 0
            async for event in stream:
                if event.type == "tool_calls.function.arguments.delta":
                    arg_deltas += 1
            final = await stream.get_final_completion()
        choice = final.choices[0]
        assert choice.finish_reason == "tool_calls"
        call = choice.message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        assert arg_deltas >= 2
        assert openai_fake.last_usage is not None
        assert openai_fake.last_usage["completion_tokens"] == 3  # "get_weather" + '{"city": "Paris"}'

        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"},
        ]
        reply = await client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL_OPENAI])
    assert reply.choices[0].message.content == "Hello from fake-openai! The tool said: 21C and sunny"
    assert reply.usage is not None and reply.usage.prompt_tokens == 6 + 3


async def test_openai_auth_and_status_modes(openai_fake: FakeUpstream) -> None:
    openai = pytest.importorskip("openai")
    openai_fake.keys = {"sk-good"}
    async with openai.AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="sk-bad-key-123", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as auth_err:
            await bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert auth_err.value.code == "invalid_api_key"
        assert "sk-bad-key-123" not in str(auth_err.value)  # masked, like OpenAI

        openai_fake.script = ["echo_key_401"]
        with pytest.raises(openai.AuthenticationError) as echo_err:
            await bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert "Bearer sk-bad-key-123" in str(echo_err.value)

    async with openai.AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="sk-good", max_retries=0) as good:
        openai_fake.script = ["status:429:2", "status:503"]
        with pytest.raises(openai.RateLimitError) as rate:
            await good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert rate.value.response.headers["retry-after"] == "2"
        assert rate.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError):
            await good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        ok = await good.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content == "Hello from fake-openai! You said: hi"
    assert [r.mode for r in openai_fake.requests] == ["ok", "echo_key_401", "status:429:2", "status:503", "ok"]


# --------------------------------------------------------- OpenAI responses


async def test_responses_raw_event_sequence(openai_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    body = {"model": "gpt-4o", "input": "hi there", "stream": True}
    async with session.post(openai_fake.url + "/v1/responses", json=body) as r:
        events = parse_sse(await r.read())
    kinds = [e for e, _ in events]
    datas = [json.loads(d) for _, d in events]
    assert kinds == [d["type"] for d in datas]
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") == 7
    assert len({d["response"]["id"] for d in datas if "response" in d}) == 1
    final = datas[-1]["response"]
    assert final["status"] == "completed"
    assert final["usage"] == {
        "input_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 9,
    }


async def test_responses_sdk_reasoning_and_function_call(openai_fake: FakeUpstream) -> None:
    openai = pytest.importorskip("openai")
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    }
    async with openai.AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="k", max_retries=0) as client:
        async with client.responses.stream(
            model="o3-mini",
            input=[{"role": "user", "content": "weather in Paris please"}],
            tools=[tool],
            reasoning={"effort": "low", "summary": "auto"},
            include=["reasoning.encrypted_content"],
        ) as stream:
            final = await stream.get_final_response()
        reasoning, call = final.output
        assert reasoning.type == "reasoning"
        assert reasoning.summary[0].text == REASONING_TEXT
        assert reasoning.encrypted_content
        assert call.type == "function_call" and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "Paris"}
        assert final.usage is not None
        assert final.usage.output_tokens_details.reasoning_tokens == 9
        assert final.usage.output_tokens == 9 + 3

        follow_up = await client.responses.create(
            model="gpt-4o",
            instructions="Be brief.",
            input=[
                {"role": "user", "content": "weather in Paris please"},
                {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                {"type": "function_call_output", "call_id": call.call_id, "output": "21C and sunny"},
            ],
            tools=[tool],
        )
    assert follow_up.output_text == "Hello from fake-openai! The tool said: 21C and sunny"
    assert follow_up.usage is not None and follow_up.usage.input_tokens == 2 + 4 + 3


# ------------------------------------------------------------------ Anthropic


async def test_anthropic_sdk_stream_thinking_and_tool_use(anthropic_fake: FakeUpstream) -> None:
    anthropic = pytest.importorskip("anthropic")
    async with anthropic.AsyncAnthropic(base_url=anthropic_fake.url, api_key="sk-ant", max_retries=0) as client:
        async with client.messages.stream(
            model="claude-fake-1",
            max_tokens=2048,
            thinking={"type": "enabled", "budget_tokens": 1024},
            tools=[WEATHER_TOOL_ANTHROPIC],
            messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        ) as stream:
            message = await stream.get_final_message()
        assert [b.type for b in message.content] == ["thinking", "tool_use"]
        assert message.content[0].thinking == REASONING_TEXT
        assert message.content[0].signature
        assert message.content[1].name == "get_weather"
        assert message.content[1].input == {"city": "Paris"}
        assert message.stop_reason == "tool_use"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 9 + 3)

        reply = await client.messages.create(
            model="claude-fake-1",
            max_tokens=2048,
            tools=[WEATHER_TOOL_ANTHROPIC],
            messages=[
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "assistant", "content": [b.model_dump() for b in message.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": message.content[1].id, "content": "21C and sunny"}],
                },
            ],
        )
        counted = await client.messages.count_tokens(
            model="claude-fake-1", system="Be brief.", messages=[{"role": "user", "content": "one two three"}]
        )
    assert reply.content[0].type == "text"
    assert reply.content[0].text == "Hello from fake-anthropic! The tool said: 21C and sunny"
    assert reply.stop_reason == "end_turn"
    assert counted.input_tokens == 5
    rec = anthropic_fake.requests[0]
    assert rec.headers.get("anthropic-version")
    assert "sk-ant" in (rec.headers.get("x-api-key"), rec.headers.get("authorization", "")[7:])


async def test_anthropic_raw_stream_cache_usage_and_auth(
    anthropic_fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    anthropic_fake.keys = {"sk-ant-good"}
    anthropic_fake.usage_override = {"prompt_tokens": 1100, "cache_read_tokens": 1000, "cache_write_tokens": 50}
    body = {"model": "claude-haiku-4-5", "max_tokens": 100, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": "sk-ant-good", "anthropic-version": "2023-06-01"}
    async with session.post(anthropic_fake.url + "/v1/messages?beta=true", json=body, headers=headers) as r:
        assert r.status == 200
        events = parse_sse(await r.read())
    kinds = [e for e, _ in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "ping" in kinds
    assert all(e is not None for e in kinds)
    start = json.loads(events[0][1])["message"]["usage"]
    assert start == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 50,
        "cache_read_input_tokens": 1000,
        "output_tokens": 1,
    }
    assert json.loads(events[-2][1])["usage"] == {"output_tokens": 6}
    assert anthropic_fake.requests[-1].headers["anthropic-version"] == "2023-06-01"

    async with session.post(anthropic_fake.url + "/v1/messages", json=body, headers={"x-api-key": "nope"}) as r:
        assert r.status == 401
        err = await r.json()
    assert err["type"] == "error" and err["error"]["type"] == "authentication_error"

    del body["max_tokens"]
    async with session.post(anthropic_fake.url + "/v1/messages", json=body, headers=headers) as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"] == "max_tokens: Field required"


# --------------------------------------------------------------------- Gemini


# google-genai subclasses aiohttp.ClientSession, which aiohttp frowns upon.
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
async def test_gemini_sdk_generate_stream_tools_and_count(gemini_fake: FakeUpstream) -> None:
    pytest.importorskip("google.genai")
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="g-key", http_options=types.HttpOptions(base_url=gemini_fake.url))
    try:
        async with client.aio as aio:
            resp = await aio.models.generate_content(model="gemini-2.5-flash", contents="good morning")
            assert resp.text == "Hello from fake-gemini! You said: good morning"
            assert resp.usage_metadata is not None
            assert resp.usage_metadata.prompt_token_count == 2
            assert resp.usage_metadata.candidates_token_count == 7

            texts, last = [], None
            async for chunk in await aio.models.generate_content_stream(
                model="gemini-2.5-flash",
                contents="good morning",
                config=types.GenerateContentConfig(
                    thinking_config=types.ThinkingConfig(thinking_budget=1024, include_thoughts=True)
                ),
            ):
                texts.append(chunk.text)
                last = chunk
            assert texts[0] is None  # the thought-only chunk
            assert "".join(t for t in texts if t) == "Hello from fake-gemini! You said: good morning"
            assert last is not None and last.usage_metadata is not None
            assert last.usage_metadata.thoughts_token_count == 9
            assert last.usage_metadata.total_token_count == 2 + 7 + 9
            assert last.candidates[0].finish_reason == types.FinishReason.STOP

            weather = types.FunctionDeclaration(
                name="get_weather",
                description="Current weather",
                parameters=types.Schema(
                    type=types.Type.OBJECT, properties={"city": types.Schema(type=types.Type.STRING)}
                ),
            )
            config = types.GenerateContentConfig(
                tools=[types.Tool(function_declarations=[weather])],
                automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            )
            called = await aio.models.generate_content(
                model="gemini-2.5-flash", contents="weather in Paris?", config=config
            )
            assert called.function_calls is not None
            assert called.function_calls[0].name == "get_weather"
            assert called.function_calls[0].args == {"city": "Paris"}

            answered = await aio.models.generate_content(
                model="gemini-2.5-flash",
                contents=[
                    types.Content(role="user", parts=[types.Part(text="weather in Paris?")]),
                    types.Content(role="model", parts=[types.Part(function_call=called.function_calls[0])]),
                    types.Content(
                        role="user",
                        parts=[types.Part.from_function_response(name="get_weather", response={"result": "sunny"})],
                    ),
                ],
                config=config,
            )
            assert answered.text == "Hello from fake-gemini! The tool said: sunny"

            counted = await aio.models.count_tokens(model="gemini-2.5-flash", contents="one two three")
            assert counted.total_tokens == 3
    finally:
        client.close()
    paths = [r.path for r in gemini_fake.requests]
    assert paths[0] == "/v1/models/gemini-2.5-flash:generateContent"
    assert paths[1] == "/v1/models/gemini-2.5-flash:streamGenerateContent"
    assert gemini_fake.requests[1].query == "alt=sse"
    assert all(r.headers["x-goog-api-key"] == "g-key" for r in gemini_fake.requests)


async def test_gemini_raw_sse_framing_and_query_key(gemini_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    gemini_fake.keys = {"good"}
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    url = gemini_fake.url + "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
    async with session.post(url, params={"alt": "sse", "key": "good"}, json=body) as r:
        assert r.status == 200
        raw = await r.read()
    assert raw.startswith(b"data: {") and raw.endswith(b"\r\n\r\n")
    chunks = [json.loads(d) for _, d in parse_sse(raw)]
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 6
    assert "thoughtsTokenCount" not in chunks[-1]["usageMetadata"]

    async with session.post(url, params={"alt": "sse", "key": "bad"}, json=body) as r:
        assert r.status == 400
        assert (await r.json())["error"]["status"] == "INVALID_ARGUMENT"
    async with session.post(url, params={"key": "good"}, json=body) as r:  # no alt=sse: one JSON array
        array = json.loads(await r.read())
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in array) == (
        "Hello from fake-gemini! You said: hi"
    )


# ------------------------------------------------------------ fault modes


def stream_request(fake: FakeUpstream) -> tuple[str, dict[str, Any]]:
    """URL and JSON body of a streaming generation request for ``fake``."""
    text = "one two three four five six"
    if isinstance(fake, FakeGemini):
        return (
            fake.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": text}]}]},
        )
    if isinstance(fake, FakeAnthropic):
        return fake.url + "/v1/messages", {
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": text}],
        }
    if isinstance(fake, FakeOpenAIResponses):
        return fake.url + "/v1/responses", {"model": "gpt-4o", "stream": True, "input": text}
    return fake.url + "/v1/chat/completions", {
        "model": "gpt-4o",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": text}],
    }


FAKES: list[Callable[[], FakeUpstream]] = [FakeOpenAIChat, FakeOpenAIResponses, FakeAnthropic, FakeGemini]


@pytest.fixture(params=FAKES, ids=lambda f: f.__name__)
async def any_fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeUpstream]:
    async for fake in started(request.param()):
        yield fake


def usage_mentioned(raw: bytes) -> bool:
    return any(word in raw for word in (b'"usage":{', b'"usageMetadata"', b'"usage": {'))


async def test_ok_stream_no_usage_and_truncated(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.script = ["ok", "no_usage", "truncated_sse"]
    bodies = []
    for _ in range(3):
        async with session.post(url, json=body) as r:
            assert r.status == 200
            bodies.append(await r.read())
    ok, no_usage, truncated = bodies
    assert usage_mentioned(ok)
    assert not usage_mentioned(no_usage)
    assert len(parse_sse(truncated)) < len(parse_sse(ok))
    closing = (b"[DONE]", b"message_delta", b"message_stop", b"response.completed", b'"finishReason"', b'"finish_reason":"stop"')
    assert any(marker in ok for marker in closing)
    assert not any(marker in truncated for marker in closing)
    assert b'"output_tokens":6' not in truncated and b'"candidatesTokenCount"' not in truncated
    assert any_fake.last_usage is not None and any_fake.last_usage["prompt_tokens"] == 6


@pytest.mark.parametrize("mode", ["status:529", "status:429:7", "echo_key_401"])
async def test_status_modes_have_vendor_error_bodies(
    any_fake: FakeUpstream, session: aiohttp.ClientSession, mode: str
) -> None:
    url, body = stream_request(any_fake)
    any_fake.mode = mode
    headers = {"Authorization": "Bearer sk-secret-1", "x-api-key": "sk-secret-1", "x-goog-api-key": "sk-secret-1"}
    async with session.post(url, json=body, headers=headers) as r:
        expected = {"status:529": 529, "status:429:7": 429, "echo_key_401": 401}[mode]
        assert r.status == expected
        assert r.headers.get("Retry-After") == ("7" if mode == "status:429:7" else None)
        err = await r.json()
    if isinstance(any_fake, FakeAnthropic):
        assert err["type"] == "error" and "type" in err["error"]
    elif isinstance(any_fake, FakeGemini):
        assert err["error"]["code"] == expected and err["error"]["status"]
    else:
        assert set(err["error"]) == {"message", "type", "param", "code"}
    if mode == "echo_key_401":
        assert "sk-secret-1" in json.dumps(err)


async def test_garbage_and_html(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.script = ["garbage_json", "html_200"]
    async with session.post(url, json=body) as r:
        assert r.status == 200
        datas = [d for _, d in parse_sse(await r.read()) if d not in ("[DONE]", "")]
    with pytest.raises(ValueError):
        json.loads(datas[0])
    async with session.post(url, json=body) as r:
        assert r.status == 200 and r.content_type == "text/html"
        assert b"<html>" in await r.read()


async def test_reset_mid_stream(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.mode = "reset_mid_stream"
    received = b""
    with pytest.raises(aiohttp.ClientError):
        async with session.post(url, json=body) as r:
            assert r.status == 200
            async for piece in r.content.iter_any():
                received += piece
    assert len(parse_sse(received)) == 5
    assert any_fake.cancelled == 0


async def test_stall_before_headers_detects_client_giving_up(
    any_fake: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    url, body = stream_request(any_fake)
    any_fake.mode = "stall_before_headers"
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=0.2)):
            pass
    await any_fake.wait_cancelled(1, timeout=5)
    await any_fake.wait_idle()
    assert any_fake.requests[-1].cancelled


async def test_stall_mid_stream_then_client_leaves(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.mode = "stall_mid_stream"
    received = b""
    async with session.post(url, json=body) as r:
        while len(parse_sse(received)) < 3 or not received.endswith((b"\n\n", b"\r\n\r\n")):
            received += await asyncio.wait_for(r.content.readany(), 2)
        assert any_fake.active == 1
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(r.content.readany(), 0.2)
        r.close()
    await any_fake.wait_cancelled(1)
    assert any_fake.active == 0
    assert len(parse_sse(received)) == 3


async def test_slow_stream_paces_chunks(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.mode = "slow_stream:0.02:5"
    stamps = []
    started_at = time.monotonic()
    async with session.post(url, json=body) as r:
        async for _ in r.content:  # line by line
            stamps.append(time.monotonic())
    assert stamps[-1] - started_at >= 4 * 0.02
    assert any_fake.last_usage is not None
    assert any_fake.last_usage["completion_tokens"] == 5


async def test_stop_with_stalled_request_is_quick_and_not_a_cancel(session: aiohttp.ClientSession) -> None:
    fake = FakeAnthropic()
    await fake.start()
    url, body = stream_request(fake)
    fake.mode = "stall_mid_stream"

    async def client() -> None:
        async with session.post(url, json=body) as r:
            await r.read()

    task = asyncio.create_task(client())
    await fake.wait_for(lambda: fake.active == 1)
    begun = time.monotonic()
    await fake.stop()
    assert time.monotonic() - begun < 3
    with pytest.raises(aiohttp.ClientError):
        await task
    assert fake.cancelled == 0


async def test_error_mid_stream_no_done_and_json_faults(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.script = ["error_mid_stream", "no_done", "reset_before_headers"]
    async with session.post(url, json=body) as r:
        assert r.status == 200
        events = parse_sse(await r.read())
    assert len(events) == 4
    error = json.loads(events[-1][1])
    assert error.get("error") or error.get("type") == "response.failed"

    async with session.post(url, json=body) as r:
        events = parse_sse(await r.read())
    assert events[-1][1] not in ("[DONE]", '{"type":"message_stop"}')

    with pytest.raises(aiohttp.ClientOSError):
        async with session.post(url, json=body):
            pass

    # the same faults on a plain JSON answer: half the body, then RST / stall
    if isinstance(any_fake, FakeGemini):
        url = url.replace(":streamGenerateContent?alt=sse", ":generateContent")
    body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    any_fake.script = ["reset_mid_stream", "stall_mid_stream:0.05"]
    with pytest.raises(aiohttp.ClientPayloadError):
        async with session.post(url, json=body) as r:
            await r.read()
    async with session.post(url, json=body) as r:
        assert "Hello from fake-" in json.dumps(await r.json())
    assert any_fake.cancelled == 0


async def test_stall_after_headers_client_read_timeout(any_fake: FakeUpstream, session: aiohttp.ClientSession) -> None:
    url, body = stream_request(any_fake)
    any_fake.mode = "stall_after_headers"
    async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(sock_read=0.2)) as r:
        assert r.status == 200
        with pytest.raises(asyncio.TimeoutError):
            await r.read()
    await any_fake.wait_cancelled(1)


async def test_sdks_raise_on_mid_stream_errors(openai_fake: FakeUpstream, anthropic_fake: FakeUpstream) -> None:
    openai = pytest.importorskip("openai")
    anthropic = pytest.importorskip("anthropic")
    openai_fake.mode = anthropic_fake.mode = "error_mid_stream"
    async with openai.AsyncOpenAI(base_url=openai_fake.url + "/v1", api_key="k", max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "a b c d e"}], stream=True
        )
        with pytest.raises(openai.APIError, match="server had an error"):
            async for _ in stream:
                pass
    async with anthropic.AsyncAnthropic(base_url=anthropic_fake.url, api_key="k", max_retries=0) as aclient:
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with aclient.messages.stream(
                model="claude-fake-1", max_tokens=100, messages=[{"role": "user", "content": "a b c d e"}]
            ) as astream:
                await astream.get_final_message()


async def test_restart_on_same_port_and_unrouted_paths(session: aiohttp.ClientSession) -> None:
    fake = FakeGemini(keys={"g"})
    url = await fake.start()
    await fake.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with session.get(url + "/v1beta/models?key=g"):
            pass
    assert await fake.start(port=int(url.rsplit(":", 1)[1])) == url
    try:
        async with session.get(url + "/v1beta/models", params={"key": "g"}) as r:
            models = (await r.json())["models"]
        assert models[0]["name"] == "models/gemini-2.5-flash"
        async with session.get(url + "/nowhere") as r:
            assert r.status == 404
        assert [(q.path, q.mode) for q in fake.requests] == [("/v1beta/models", "ok"), ("/nowhere", "")]
    finally:
        await fake.stop()
