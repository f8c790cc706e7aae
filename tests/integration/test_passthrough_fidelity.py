"""Issue 3 passthrough fidelity: when the client speaks the channel's dialect, the body
reaches the upstream byte for byte as the client sent it, apart from the model name.

The bodies below are written by hand and sent as raw bytes, with odd spacing, key order,
number spellings and escapes, fields relaykit has never heard of, thinking blocks with
signatures, reasoning items with ``encrypted_content``, ``thoughtSignature`` parts,
``cache_control`` and a nested ``"model"`` key that must not be renamed.  The channel's
model_map renames the top-level model, so the test can tell the relay did edit the body
(and edited nothing else).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from .dialect_fixtures import World, settled_for, world
from .harness import UPSTREAM_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with world(Path(tmp_path_factory.mktemp("fidelity"))) as w:
        yield w


CHAT = r"""{
  "messages" : [
    {"role": "developer", "content": [{"type": "text", "text": "Be terse. caf\u00e9", "cache_control": {"type": "ephemeral"}}]},
    {"role": "user", "content": "hi there \u2603 and ☃ and \ud83d\ude00", "name": "alice"},
    {"role": "assistant", "content": null, "reasoning_content": "Greet, then call the tool.",
     "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
    {"role": "user", "content": "and tomorrow?"}
  ],
  "model"   :   "m-chat",
  "metadata": {"model": "m-chat", "trace": "a\"b\\c"},
  "temperature": 0.70, "top_p": 1.00, "seed": 7,
  "x_relaykit_never_heard": {"deep": [1, 2.50, -0, 1E+2, true, null, "\/slash"]},
  "prediction": {"type": "content", "content": "x"},
  "verbosity": "low",
  "stream": STREAM,
  "stream_options": {"include_usage": true, "include_obfuscation": false}
}"""

RESPONSES = r"""{"input":[
 {"type":"message","role":"user","content":[{"type":"input_text","text":"Weather in Paris?"}]},
 {"type":"reasoning","id":"rs_0001","summary":[{"type":"summary_text","text":"Need the tool."}],"encrypted_content":"gAAAAABoSecretBlob+/==\n"},
 {"type":"function_call","id":"fc_0001","call_id":"call_0001","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"},
 {"type":"function_call_output","call_id":"call_0001","output":"21C"},
 {"role":"user","content":"Thanks, and tomorrow?"}
],
  "model" : "m-resp" ,
  "metadata" : {"model":"m-resp"},
  "store":false,"include":["reasoning.encrypted_content"],
  "reasoning":{"effort":"high","summary":"auto"},
  "text":{"verbosity":"low","format":{"type":"text"}},
  "prompt_cache_key":"agent-7","x_future_field":[{"a":1.5e-3}],
  "stream":STREAM}"""

ANTHROPIC = r"""{"model": "m-claude",   "max_tokens": 64000,
"system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
"messages": [
  {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?", "cache_control": {"type": "ephemeral"}}]},
  {"role": "assistant", "content": [
     {"type": "thinking", "thinking": "Need the tool.", "signature": "EqQBCkYIBxgCKkD+sig/=="},
     {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a=="},
     {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris", "model": "m-claude"}}]},
  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "21C", "cache_control": {"type": "ephemeral"}},
                               {"type": "text", "text": "Thanks \u00e9"}]}
],
"tools": [{"name": "get_weather", "description": "Current weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "cache_control": {"type": "ephemeral"}},
          {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"},
"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
"metadata": {"user_id": "user_abc_account_123_session_x"},
"stream": STREAM}"""

GEMINI = r"""{"contents": [
  {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
  {"role": "model", "parts": [{"text": "Let me check.", "thought": true, "thoughtSignature": "CiQB0e2Kb1sig+/=="},
                              {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQB0e2Kb2sig=="}]},
  {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}}]}
 ],
 "system_instruction": {"parts": [{"text": "Be brief. \u00e9"}]},
 "tools": [{"functionDeclarations": [{"name": "get_weather", "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}]}],
 "generationConfig": {"temperature": 0.20, "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}, "x_new_knob": 1},
 "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
 "labels": {"model": "m-gemini"}, "x_never_heard": {"stream": STREAM}
}"""


def body_of(template: str, stream: bool) -> bytes:
    raw = template.replace("STREAM", "true" if stream else "false").encode()
    json.loads(raw)  # the test's own bodies are valid JSON
    return raw


def renamed(raw: bytes, old: bytes, new: bytes) -> bytes:
    """``raw`` with the one top-level occurrence ``old`` (written with its spacing) renamed."""
    assert raw.count(old) == 1
    return raw.replace(old, new)


async def post(url: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=raw, headers={"Content-Type": "application/json", **headers}) as r:
            return r.status, await r.read()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_chat_body_arrives_unchanged(shared: World, stream: bool) -> None:
    _, uid, key = shared.customer()
    raw = body_of(CHAT, stream)
    status, answer = await post(shared.relay.base + "/chat/completions", raw,
                                {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"})
    assert status == 200, answer
    sent = shared.fakes["chat"].requests[-1]
    assert sent.body == renamed(raw, b'"model"   :   "m-chat"', b'"model"   :   "gpt-4o"')
    assert sent.headers["openai-beta"] == "assistants=v2"
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "fake-openai!" in answer.decode()
    assert not (await settled_for(shared.relay, uid, 1))[0]["estimated"]


async def test_chat_stream_without_usage_only_gains_stream_options(shared: World) -> None:
    """The one edit besides the model: relaykit asks an OpenAI upstream for the usage
    chunk (and drops it on the way back), so it can bill a stream exactly."""
    _, uid, key = shared.customer()
    raw = b'{"model":"m-chat","stream":true,"messages":[{"role":"user","content":"hi"}],"x_odd":[1.50]}'
    status, answer = await post(shared.relay.base + "/chat/completions", raw, {"Authorization": f"Bearer {key}"})
    assert status == 200
    sent = shared.fakes["chat"].requests[-1]
    assert sent.body == b'{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,' \
                        b'"messages":[{"role":"user","content":"hi"}],"x_odd":[1.50]}'
    assert b'"choices":[]' not in answer  # the usage chunk the client did not ask for stays with the relay
    assert not (await settled_for(shared.relay, uid, 1))[0]["estimated"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_responses_body_arrives_unchanged(shared: World, stream: bool) -> None:
    _, uid, key = shared.customer()
    raw = body_of(RESPONSES, stream)
    status, answer = await post(shared.relay.base + "/responses", raw,
                                {"Authorization": f"Bearer {key}", "OpenAI-Beta": "responses=experimental"})
    assert status == 200, answer
    sent = shared.fakes["resp"].requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.body == renamed(raw, b'"model" : "m-resp" ,', b'"model" : "gpt-4o" ,')
    assert sent.headers["openai-beta"] == "responses=experimental"
    assert "fake-openai!" in answer.decode()
    # the reasoning item the fake produced for include=[reasoning.encrypted_content] reached the client
    assert "encrypted_content" in answer.decode()
    assert not (await settled_for(shared.relay, uid, 1))[0]["estimated"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_anthropic_body_headers_and_beta_query_arrive_unchanged(shared: World, stream: bool) -> None:
    _, uid, key = shared.customer()
    raw = body_of(ANTHROPIC, stream)
    beta = "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27"
    status, answer = await post(shared.relay.url + "/v1/messages?beta=true", raw,
                                {"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": beta,
                                 "x-app": "cli", "anthropic-dangerous-direct-browser-access": "true"})
    assert status == 200, answer
    sent = shared.fakes["claude"].requests[-1]
    assert sent.body == renamed(raw, b'"model": "m-claude",   ', b'"model": "claude-sonnet-4-5",   ')
    assert (sent.path, sent.query) == ("/v1/messages", "beta=true")
    assert sent.headers["anthropic-beta"] == beta
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert key not in json.dumps(dict(sent.headers))
    text = answer.decode()
    assert "fake-anthropic!" in text and '"signature"' in text  # the fake's thinking came back
    assert not (await settled_for(shared.relay, uid, 1))[0]["estimated"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
async def test_gemini_body_arrives_unchanged(shared: World, stream: bool) -> None:
    _, uid, key = shared.customer()
    raw = body_of(GEMINI, stream)
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    status, answer = await post(f"{shared.relay.url}/v1beta/models/m-gemini:{action}", raw,
                                {"x-goog-api-key": key})
    assert status == 200, answer
    sent = shared.fakes["gemini"].requests[-1]
    # the model travels in the URL, so not one byte of the body changes
    assert sent.body == raw
    assert sent.path.endswith("/models/gemini-2.5-flash:" + action.split("?")[0])
    assert sent.query == ("alt=sse" if stream else "")
    assert sent.headers["x-goog-api-key"] == UPSTREAM_KEY
    text = answer.decode()
    assert "fake-gemini!" in text and '"thought": true' in text  # the fake's thoughts came back
    assert not (await settled_for(shared.relay, uid, 1))[0]["estimated"]
