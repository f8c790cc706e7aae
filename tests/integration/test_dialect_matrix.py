"""Issue 3 acceptance matrix: every official SDK client against every upstream dialect.

clients {openai chat, openai Responses, anthropic, google-genai}
  x upstream fakes {OpenAI chat, OpenAI Responses (``api: responses``), Anthropic, Gemini}
  x {plain, streamed, tool-call round trip, streamed tool-call round trip}

Each cell checks what the user sees (the text, the tool call, the usage in the client's
own terms), what reached the upstream (its own endpoint, the mapped model name) and the
books: one log row per request, not estimated, with the fake's token counts, cache
tokens included, and a ledger charge equal to the price formula applied to them.

One relay in front of four fakes serves the whole module (see dialect_fixtures.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from .dialect_fixtures import (CHANNEL, CLIENT_DIALECT, CLIENTS, GENAI_WARNING, MODEL, TOOL_RESULT, UPSTREAM_MODEL,
                               UPSTREAMS, VENDOR, WEATHER_QUESTION, WEATHER_SCHEMA, charges, Clients, expected_quota,
                               module_fixtures, settled_for, wire_usage, World)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), GENAI_WARNING]

MODES = ("plain", "stream", "tool", "tool_stream")
UPSTREAM_PATH = {"chat": "/v1/chat/completions", "resp": "/v1/responses", "claude": "/v1/messages"}


shared, clients = module_fixtures("matrix")


@dataclass
class Seen:
    """What the user of one SDK saw in one cell."""

    text: str = ""
    #: usage as the client's SDK reports it, in that dialect's own terms, per request
    usage: list[tuple[int, ...]] = field(default_factory=list)
    #: the tool call the model made (name, parsed arguments), for the tool modes
    call: tuple[str, dict[str, Any]] | None = None


# --------------------------------------------------------------------------- OpenAI chat

CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                "parameters": WEATHER_SCHEMA}}]


def chat_usage(u: Any) -> tuple[int, ...]:
    assert u is not None, "no usage reached the openai client"
    cached = u.prompt_tokens_details.cached_tokens if u.prompt_tokens_details else 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    return (u.prompt_tokens, u.completion_tokens, cached or 0)


async def drive_chat(clients: Clients, key: str, model: str, mode: str, prompt: str) -> Seen:
    c = clients.openai(key)
    seen = Seen()
    if mode == "plain":
        r = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])
        assert r.choices[0].finish_reason == "stop"
        seen.text = r.choices[0].message.content or ""
        seen.usage.append(chat_usage(r.usage))
        return seen
    if mode == "stream":
        stream = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                 stream=True, stream_options={"include_usage": True})
        chunks = [ch async for ch in stream]
        seen.text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert finishes == ["stop"]
        assert [ch for ch in chunks if not ch.choices] == [chunks[-1]], "one usage chunk, last"
        seen.usage.append(chat_usage(chunks[-1].usage))
        return seen

    question: dict[str, Any] = {"role": "user", "content": WEATHER_QUESTION}

    async def ask(messages: list[dict[str, Any]]) -> Any:
        if mode == "tool":
            r = await c.chat.completions.create(model=model, messages=messages, tools=CHAT_TOOLS)
            seen.usage.append(chat_usage(r.usage))
            return r
        async with c.chat.completions.stream(model=model, messages=messages, tools=CHAT_TOOLS,
                                             stream_options={"include_usage": True}) as s:
            async for _ in s:
                pass
            r = await s.get_final_completion()
        seen.usage.append(chat_usage(r.usage))
        return r

    first = await ask([question])
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    seen.call = (calls[0].function.name, json.loads(calls[0].function.arguments))
    assistant = {"role": "assistant", "content": first.choices[0].message.content,
                 "tool_calls": [{"id": calls[0].id, "type": "function",
                                 "function": {"name": calls[0].function.name,
                                              "arguments": calls[0].function.arguments}}]}
    second = await ask([question, assistant, {"role": "tool", "tool_call_id": calls[0].id, "content": TOOL_RESULT}])
    assert second.choices[0].finish_reason == "stop"
    seen.text = second.choices[0].message.content or ""
    return seen


# --------------------------------------------------------------------------- OpenAI Responses

RESP_TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather",
               "parameters": WEATHER_SCHEMA, "strict": False}]


def responses_usage(u: Any) -> tuple[int, ...]:
    assert u is not None, "no usage reached the Responses client"
    cached = u.input_tokens_details.cached_tokens if u.input_tokens_details else 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    return (u.input_tokens, u.output_tokens, cached or 0)


async def drive_responses(clients: Clients, key: str, model: str, mode: str, prompt: str) -> Seen:
    c = clients.openai(key)
    seen = Seen()

    async def ask(streamed: bool, **kw: Any) -> Any:
        if not streamed:
            r = await c.responses.create(model=model, **kw)
        else:
            deltas: list[str] = []
            async with c.responses.stream(model=model, **kw) as s:
                async for ev in s:
                    if ev.type == "response.output_text.delta":
                        deltas.append(ev.delta)
                r = await s.get_final_response()
            assert "".join(deltas) == r.output_text, "the streamed deltas differ from the final response"
        assert r.status == "completed"
        seen.usage.append(responses_usage(r.usage))
        return r

    if mode in ("plain", "stream"):
        r = await ask(mode == "stream", input=prompt)
        seen.text = r.output_text
        return seen
    streamed = mode == "tool_stream"
    question = {"role": "user", "content": WEATHER_QUESTION}
    first = await ask(streamed, input=[question], tools=RESP_TOOLS)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and first.output_text == ""
    seen.call = (calls[0].name, json.loads(calls[0].arguments))
    history = [question, *(o.model_dump(exclude_none=True) for o in first.output),
               {"type": "function_call_output", "call_id": calls[0].call_id, "output": TOOL_RESULT}]
    second = await ask(streamed, input=history, tools=RESP_TOOLS)
    seen.text = second.output_text
    return seen


# --------------------------------------------------------------------------- Anthropic

CLAUDE_TOOLS = [{"name": "get_weather", "description": "Current weather", "input_schema": WEATHER_SCHEMA}]


def anthropic_usage(u: Any) -> tuple[int, ...]:
    return (u.input_tokens, u.output_tokens, u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0)


async def drive_anthropic(clients: Clients, key: str, model: str, mode: str, prompt: str) -> Seen:
    c = clients.anthropic(key)
    seen = Seen()

    async def ask(streamed: bool, **kw: Any) -> Any:
        if not streamed:
            m = await c.messages.create(model=model, max_tokens=1024, **kw)
        else:
            async with c.messages.stream(model=model, max_tokens=1024, **kw) as s:
                streamed_text = "".join([t async for t in s.text_stream])
                m = await s.get_final_message()
            assert streamed_text == "".join(b.text for b in m.content if b.type == "text")
        seen.usage.append(anthropic_usage(m.usage))
        return m

    if mode in ("plain", "stream"):
        m = await ask(mode == "stream", messages=[{"role": "user", "content": prompt}])
        assert m.stop_reason == "end_turn"
        seen.text = "".join(b.text for b in m.content if b.type == "text")
        return seen
    streamed = mode == "tool_stream"
    question = {"role": "user", "content": WEATHER_QUESTION}
    first = await ask(streamed, messages=[question], tools=CLAUDE_TOOLS)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1
    seen.call = (uses[0].name, uses[0].input)
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": TOOL_RESULT}]}
    second = await ask(streamed, messages=[question, {"role": "assistant", "content": first.content}, result],
                       tools=CLAUDE_TOOLS)
    assert second.stop_reason == "end_turn"
    seen.text = "".join(b.text for b in second.content if b.type == "text")
    return seen


# --------------------------------------------------------------------------- google-genai


def gemini_usage(u: Any) -> tuple[int, ...]:
    assert u is not None, "no usage_metadata reached the google-genai client"
    completion = (u.candidates_token_count or 0) + (u.thoughts_token_count or 0)
    return (u.prompt_token_count, completion, u.cached_content_token_count or 0)


async def drive_gemini(clients: Clients, key: str, model: str, mode: str, prompt: str) -> Seen:
    from google.genai import types

    aio = clients.genai(key)
    seen = Seen()

    async def ask(streamed: bool, contents: Any, config: Any = None) -> tuple[str, list[Any], Any]:
        """(text, parts of the model's answer, finish reason)"""
        if not streamed:
            r = await aio.models.generate_content(model=model, contents=contents, config=config)
            seen.usage.append(gemini_usage(r.usage_metadata))
            cand = r.candidates[0]
            return r.text or "", list(cand.content.parts or []), cand.finish_reason
        chunks = [ch async for ch in await aio.models.generate_content_stream(model=model, contents=contents,
                                                                                config=config)]
        assert chunks, "an empty stream"
        parts = [p for ch in chunks if ch.candidates and ch.candidates[0].content
                 for p in ch.candidates[0].content.parts or []]
        finishes = [ch.candidates[0].finish_reason for ch in chunks if ch.candidates and ch.candidates[0].finish_reason]
        assert len(finishes) == 1 and chunks[-1].candidates[0].finish_reason == finishes[0]
        seen.usage.append(gemini_usage(chunks[-1].usage_metadata))
        return "".join(ch.text or "" for ch in chunks), parts, finishes[0]

    if mode in ("plain", "stream"):
        seen.text, _, finish = await ask(mode == "stream", prompt)
        assert finish == types.FinishReason.STOP
        return seen
    streamed = mode == "tool_stream"
    weather = types.FunctionDeclaration(name="get_weather", description="Current weather",
                                        parameters_json_schema=WEATHER_SCHEMA)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    question = types.Content(role="user", parts=[types.Part(text=WEATHER_QUESTION)])
    _, parts, finish = await ask(streamed, [question], config)
    assert finish == types.FinishReason.STOP
    calls = [p.function_call for p in parts if p.function_call]
    assert len(calls) == 1
    seen.call = (calls[0].name or "", dict(calls[0].args or {}))
    answer = types.Content(role="user", parts=[
        types.Part.from_function_response(name="get_weather", response={"result": TOOL_RESULT})])
    seen.text, _, finish = await ask(streamed, [question, types.Content(role="model", parts=parts), answer], config)
    assert finish == types.FinishReason.STOP
    return seen


DRIVERS = {"chat": drive_chat, "responses": drive_responses, "anthropic": drive_anthropic, "gemini": drive_gemini}


def client_view(client: str, wire: dict[str, int]) -> tuple[int, ...]:
    """The usage the client should see, in its own dialect's terms, given what the
    upstream reported (normalised: prompt includes cache reads and writes)."""
    p, c, cr, cw = (wire["prompt_tokens"], wire["completion_tokens"], wire["cache_read_tokens"],
                    wire["cache_write_tokens"])
    if client == "anthropic":
        return (p - cr - cw, c, cr, cw)  # Anthropic input_tokens exclude the cache
    return (p, c, cr)


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client", CLIENTS)
async def test_cell(shared: World, clients: Clients, client: str, upstream: str, mode: str) -> None:
    relay, fake = shared.relay, shared.fakes[upstream]
    user, uid, key = shared.customer()
    before = len(fake.requests)
    prompt = f"hello matrix {client} {upstream} {mode}"

    seen = await DRIVERS[client](clients, key, MODEL[upstream], mode, prompt)

    # what the user sees
    tool = mode.startswith("tool")
    if tool:
        assert seen.call == ("get_weather", {"city": "Paris"})
        assert seen.text.startswith(f"Hello from fake-{VENDOR[upstream]}! The tool said:")
        assert TOOL_RESULT in seen.text
    else:
        assert seen.text == f"Hello from fake-{VENDOR[upstream]}! You said: {prompt}"

    # what reached the upstream: its own endpoint, the mapped model, one request per turn
    sent = fake.requests[before:]
    assert len(sent) == (2 if tool else 1)
    for rec in sent:
        if upstream == "gemini":
            action = "streamGenerateContent" if mode.endswith("stream") else "generateContent"
            assert rec.path.endswith(f"/models/{UPSTREAM_MODEL[upstream]}:{action}")
        else:
            assert rec.path == UPSTREAM_PATH[upstream]
            assert rec.json["model"] == UPSTREAM_MODEL[upstream]
            assert bool(rec.json.get("stream")) == mode.endswith("stream")
    wires = [wire_usage(fake, before + i) for i in range(len(sent))]
    assert seen.usage == [client_view(client, w) for w in wires]

    # the books
    logs = await settled_for(relay, uid, len(sent))
    assert len(logs) == len(sent)
    charged = charges(relay, user)
    for log, wire in zip(logs, wires):
        assert not log["estimated"], "the upstream reported usage; the log must not be an estimate"
        assert (log["status"], log["model"], log["upstream_model"], log["channel"], log["dialect"], log["stream"]) == (
            200, MODEL[upstream], UPSTREAM_MODEL[upstream], CHANNEL[upstream], CLIENT_DIALECT[client],
            mode.endswith("stream"))
        got = (log["prompt_tokens"], log["completion_tokens"], log["cache_read_tokens"], log["cache_write_tokens"])
        assert got == (wire["prompt_tokens"], wire["completion_tokens"], wire["cache_read_tokens"],
                       wire["cache_write_tokens"])
        want = expected_quota(*got)
        assert want > 0 and log["quota"] == want
        assert charged[log["request_id"]] == want
    assert len(charged) == len(sent)
