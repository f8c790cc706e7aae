"""Anthropic Messages ⇄ hub translation: requests, responses, streams, usage, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaykit.dialects import anthropic as A
from relaykit.dialects.hub import UpstreamStreamError, hub_chunk, hub_usage_chunk

RID, CREATED = "chatcmpl-abc", 1700000000


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: "):])
        assert data is not None, block
        out.append((name, data))
    return out


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return hub_chunk(RID, CREATED, "up-model", delta, finish)


def usage_chunk(prompt: int, completion: int, cached: int = 0, write: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return hub_usage_chunk(RID, CREATED, "up-model", {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": write},
        "completion_tokens_details": {"reasoning_tokens": reasoning}})


def tool_delta(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


# =========================================================================== ingress: request


CLAUDE_CODE_LIKE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "EqQB"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "21C and sunny"},
            {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}]},
    ],
    "tools": [{"name": "get_weather", "description": "Current weather",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
              {"type": "web_search_20250305", "name": "web_search"}],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "stop_sequences": ["\n\nHuman:"],
    "stream": True,
    "top_k": 5,
    "metadata": {"user_id": "u-123"},
}


def test_request_to_hub_carries_system_turns_tools_and_settings() -> None:
    hub = A.request_to_hub(CLAUDE_CODE_LIKE, model="gpt-4o")
    assert hub["model"] == "gpt-4o"
    msgs = hub["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "user"]
    assert msgs[0]["content"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    assistant = msgs[2]
    assert assistant["content"] == "Checking."
    assert assistant["reasoning_content"] == "Need the tool."
    assert assistant["reasoning_signature"] == "EqQB"
    assert assistant["tool_calls"] == [{"id": "toolu_01A", "type": "function",
                                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_01A", "content": "21C and sunny"}
    assert msgs[4]["content"] == [{"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}}]
    assert [t["function"]["name"] for t in hub["tools"]] == ["get_weather"]  # server tool dropped
    assert hub["tools"][0]["function"]["parameters"]["required"] == ["city"]
    assert hub["tool_choice"] == "required"
    assert hub["parallel_tool_calls"] is False
    assert hub["max_completion_tokens"] == 1024
    assert hub["stop"] == ["\n\nHuman:"]
    assert hub["user"] == "u-123"
    assert hub["reasoning_effort"] == "low"
    assert hub["stream"] is True
    assert "top_k" not in hub


def test_request_to_hub_images_documents_and_error_results() -> None:
    body = {"max_tokens": 10, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
            {"type": "text", "text": "Describe"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "shot", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": [
            {"type": "text", "text": "camera offline"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}}]}]},
    ]}
    msgs = A.request_to_hub(body, model="m")["messages"]
    parts = msgs[0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}}
    assert parts[2]["file"]["file_data"] == "data:application/pdf;base64,JVBER"
    assert parts[3] == {"type": "text", "text": "Describe"}
    assert msgs[1]["content"] is None and msgs[1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert msgs[2] == {"role": "tool", "tool_call_id": "t1", "content": "Error: camera offline"}
    assert msgs[3] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]}


def test_request_to_hub_structured_output_and_adaptive_effort() -> None:
    hub = A.request_to_hub({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                            "thinking": {"type": "adaptive"}, "output_config": {
                                "effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}}},
                           model="m")
    assert hub["reasoning_effort"] == "high"
    assert hub["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert "stream" not in hub


@pytest.mark.parametrize("body, fragment", [
    ({"max_tokens": 5}, "messages"),
    ({"max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, "role"),  # "system" is accepted (Claude Code 2.1)
    ({"max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"messages": [{"role": "user", "content": 5}]}, "content"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "input_schema": {}}],
      "tool_choice": {"type": "bogus"}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]},
     "image"),
])
def test_request_to_hub_rejects_invalid_input(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        A.request_to_hub(body, model="m")


# =========================================================================== ingress: response


HUB_RESPONSE = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Checking.", "reasoning_content": "Let me think",
        "tool_calls": [{"id": "call.1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                       {"id": "call_2", "type": "function", "function": {"name": "noop", "arguments": "not json"}}]}}],
    "usage": {"prompt_tokens": 170, "completion_tokens": 12, "total_tokens": 182,
              "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 50},
              "completion_tokens_details": {"reasoning_tokens": 3}},
}


def test_response_from_hub_builds_a_message_the_sdk_accepts() -> None:
    anthropic = pytest.importorskip("anthropic")
    body = A.response_from_hub(HUB_RESPONSE, model="claude-sonnet-4-5")
    msg = anthropic.types.Message.model_validate(body)
    assert msg.model == "claude-sonnet-4-5"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].thinking == "Let me think"
    assert msg.content[2].id == "call_1"  # sanitised to Anthropic's id pattern
    assert msg.content[2].input == {"city": "Paris"}
    assert msg.content[3].input == {}
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens,
            msg.usage.output_tokens) == (20, 100, 50, 12)


@pytest.mark.parametrize("finish, tools, stop", [
    ("stop", False, "end_turn"), ("length", False, "max_tokens"), ("tool_calls", True, "tool_use"),
    ("content_filter", False, "refusal"), (None, True, "tool_use"), (None, False, "end_turn"),
])
def test_finish_reason_to_stop_reason(finish: str | None, tools: bool, stop: str) -> None:
    message: dict[str, Any] = {"role": "assistant", "content": "x"}
    if tools:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    resp = {"id": "r", "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
    assert A.response_from_hub(resp, model="m")["stop_reason"] == stop


# =========================================================================== ingress: stream


def test_stream_from_hub_event_order_for_thinking_text_and_tool() -> None:
    s = A.StreamFromHub(model="claude-x", response_id="msg_1", created=CREATED)
    raw = b"".join(s.feed(c) for c in [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "Let me think"}), chunk({"reasoning_signature": "sig=="}),
        chunk({"content": "Checking."}),
        tool_delta(0, "", "call_1", "get_weather"), tool_delta(0, '{"city": "Pa'), tool_delta(0, 'ris"}'),
        chunk({}, "tool_calls"), usage_chunk(40, 12, cached=20)]) + s.close()
    events = sse_events(raw)
    assert all(name == data["type"] for name, data in events)
    assert [(n, d.get("index"), (d.get("delta") or d.get("content_block") or {}).get("type")) for n, d in events] == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"), ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"), ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"), ("content_block_delta", 1, "text_delta"), ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"), ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"), ("content_block_stop", 2, None),
        ("message_delta", None, None), ("message_stop", None, None)]
    assert events[8][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}
    final = events[-2][1]
    assert final["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert final["usage"] == {"input_tokens": 20, "output_tokens": 12, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 20}
    assert s.close() == b""


def test_stream_from_hub_emits_each_text_delta_immediately() -> None:
    s = A.StreamFromHub(model="m", response_id="msg_1", created=CREATED)
    first = sse_events(s.feed(chunk({"content": "Hel"})))
    assert [n for n, _ in first] == ["message_start", "content_block_start", "content_block_delta"]
    assert first[-1][1]["delta"] == {"type": "text_delta", "text": "Hel"}
    second = sse_events(s.feed(chunk({"content": "lo"})))
    assert second == [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": "lo"}})]
    assert s.feed(chunk({"content": ""})) == b""  # an empty delta opens nothing


def test_stream_from_hub_new_thinking_block_after_a_signature() -> None:
    s = A.StreamFromHub(model="m", response_id="msg_1", created=CREATED)
    raw = b"".join(s.feed(c) for c in [chunk({"reasoning_content": "a"}), chunk({"reasoning_signature": "s1"}),
                                       chunk({"reasoning_content": "b"}), chunk({"reasoning_signature": "s2"})])
    starts = [d["index"] for n, d in sse_events(raw) if n == "content_block_start"]
    assert starts == [0, 1]


def test_stream_from_hub_parallel_tools_get_contiguous_blocks_and_sdk_parses_them() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")
    s = A.StreamFromHub(model="claude-x", response_id="msg_1", created=CREATED)
    raw = b"".join(s.feed(c) for c in [
        chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "Let me think"}),
        chunk({"reasoning_signature": "sig=="}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        tool_delta(0, "", "call_1", "get_weather"), tool_delta(0, '{"city":"Paris"}'),
        tool_delta(1, '{"city":"Rome"}', "call_2", "get_weather"),
        chunk({}, "tool_calls"), usage_chunk(30, 12, cached=10, write=5)]) + s.close()
    transport = httpx2.MockTransport(lambda req: httpx2.Response(200, content=raw,
                                                                headers={"content-type": "text/event-stream"}))
    client = anthropic.Anthropic(api_key="k", base_url="http://relay.test", max_retries=0,
                                 http_client=httpx2.Client(transport=transport))
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
        msg = stream.get_final_message()
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert msg.content[0].signature == "sig=="
    assert msg.content[1].text == "Hello"
    assert [b.input for b in msg.content[2:]] == [{"city": "Paris"}, {"city": "Rome"}]
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens,
            msg.usage.output_tokens) == (15, 10, 5, 12)


def test_stream_from_hub_close_without_chunks_is_a_valid_empty_message() -> None:
    s = A.StreamFromHub(model="m", response_id="msg_1", created=CREATED)
    events = sse_events(s.close())
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "end_turn"


def test_stream_error_frame_raises_in_the_sdk() -> None:
    anthropic = pytest.importorskip("anthropic")
    httpx2 = pytest.importorskip("httpx2")
    s = A.StreamFromHub(model="m", response_id="msg_1", created=CREATED)
    raw = s.feed(chunk({"content": "partial"})) + s.error("Upstream overloaded", 529)
    assert sse_events(raw)[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error",
                                                                        "message": "Upstream overloaded"}})
    transport = httpx2.MockTransport(lambda req: httpx2.Response(200, content=raw,
                                                                headers={"content-type": "text/event-stream"}))
    client = anthropic.Anthropic(api_key="k", base_url="http://relay.test", max_retries=0,
                                 http_client=httpx2.Client(transport=transport))
    with (pytest.raises(anthropic.APIStatusError, match="Upstream overloaded"),
          client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as st):
        st.get_final_message()


# =========================================================================== egress: request


def test_request_from_hub_merges_tool_results_and_keeps_alternation() -> None:
    hub = {"model": "x", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call:1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call:1", "content": "21C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "25C"}]},
        {"role": "user", "content": "Thanks  "},
        {"role": "assistant", "content": "You're welcome.  "},
    ]}
    body = A.request_from_hub(hub, model="claude-sonnet-4-5")
    assert body["model"] == "claude-sonnet-4-5"
    assert body["system"] == "Be brief.\n\nUse tools."
    assert body["max_tokens"] == 8192
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "w", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "w", "input": {}}]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "21C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "25C"},
        {"type": "text", "text": "Thanks  "}]
    assert turns[3]["content"] == [{"type": "text", "text": "You're welcome."}]  # final assistant: no trailing space


def test_request_from_hub_sampling_tools_and_formats() -> None:
    hub = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "   "},
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklG"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}],
        "temperature": 1.7, "top_p": 0.9, "stop": "END", "max_tokens": 300, "user": "u1",
        "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "custom", "custom": {"name": "c"}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {"type": "object"}}},
        "stream": True, "seed": 3}
    body = A.request_from_hub(hub, model="c")
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "look", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklG"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]
    assert body["temperature"] == 1.0 and body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["max_tokens"] == 300
    assert body["metadata"] == {"user_id": "u1"}
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert body["tool_choice"] == {"type": "tool", "name": "f", "disable_parallel_tool_use": True}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert body["stream"] is True
    assert "seed" not in body and "thinking" not in body


@pytest.mark.parametrize("choice, expected", [
    ("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"}),
])
def test_request_from_hub_tool_choice(choice: str, expected: dict[str, Any]) -> None:
    hub = {"messages": [{"role": "user", "content": "x"}], "tool_choice": choice,
           "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}
    assert A.request_from_hub(hub, model="c")["tool_choice"] == expected


def test_request_from_hub_thinking_signed_history_and_budget() -> None:
    hub = {"reasoning_effort": "medium", "temperature": 0.3, "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "plan", "reasoning_signature": "sig",
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r"}]}
    body = A.request_from_hub(hub, model="c")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] > 8192  # room for the answer after the budget
    assert "temperature" not in body
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "plan", "signature": "sig"}


def test_request_from_hub_drops_unsigned_thinking_and_disables_thinking_for_it() -> None:
    hub = {"reasoning_effort": "high", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "reasoning_content": "deepseek thoughts",
         "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r"}]}
    body = A.request_from_hub(hub, model="c")
    assert "thinking" not in body
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use"]


def test_request_from_hub_budget_shrinks_to_fit_max_tokens() -> None:
    hub = {"reasoning_effort": "high", "max_completion_tokens": 4000, "messages": [{"role": "user", "content": "q"}]}
    body = A.request_from_hub(hub, model="c")
    assert body["max_tokens"] == 4000
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    tiny = A.request_from_hub({**hub, "max_completion_tokens": 1500}, model="c")
    assert "thinking" not in tiny


def test_request_from_hub_first_turn_is_user_and_orphan_results_become_text() -> None:
    hub = {"messages": [{"role": "assistant", "content": "Hello!"},
                        {"role": "tool", "tool_call_id": "ghost", "content": "42"}]}
    turns = A.request_from_hub(hub, model="c")["messages"]
    assert turns[0] == {"role": "user", "content": [{"type": "text", "text": "..."}]}
    assert turns[2] == {"role": "user", "content": [{"type": "text", "text": "Tool result (ghost): 42"}]}


@pytest.mark.parametrize("hub, fragment", [
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]},
     "image/bmp"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]},
     "audio"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n > 1"),
    ({"messages": "hi"}, "messages"),
])
def test_request_from_hub_rejects_what_anthropic_cannot_take(hub: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        A.request_from_hub(hub, model="c")


# =========================================================================== egress: response


def test_response_to_hub_normalises_content_and_cache_usage() -> None:
    body = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "thinking", "thinking": "Let me think", "signature": "sig=="},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 12, "cache_creation_input_tokens": 50,
                      "cache_read_input_tokens": 100}}
    hub = A.response_to_hub(body, model="claude-sonnet-4-5", response_id=RID, created=CREATED)
    assert (hub["id"], hub["created"], hub["object"]) == (RID, CREATED, "chat.completion")
    choice = hub["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] == "Checking."
    assert msg["reasoning_content"] == "Let me think" and msg["reasoning_signature"] == "sig=="
    assert msg["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert hub["usage"] == {"prompt_tokens": 170, "completion_tokens": 12, "total_tokens": 182,
                            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 50},
                            "completion_tokens_details": {"reasoning_tokens": 0}}


@pytest.mark.parametrize("stop, finish", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length"),
])
def test_stop_reason_to_finish_reason(stop: str, finish: str) -> None:
    body = {"content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {}}
    assert A.response_to_hub(body, model="m", response_id=RID, created=CREATED)["choices"][0]["finish_reason"] == finish


def test_response_to_hub_raises_on_error_body() -> None:
    with pytest.raises(UpstreamStreamError, match="Overloaded"):
        A.response_to_hub({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                          model="m", response_id=RID, created=CREATED)


def test_usage_from_body_accepts_usage_or_message() -> None:
    usage = {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 5}
    assert A.usage_from_body(usage)["prompt_tokens"] == 8
    assert A.usage_from_body({"usage": usage})["prompt_tokens_details"]["cached_tokens"] == 5
    assert A.usage_from_body({"usage": usage})["total_tokens"] == 12


# =========================================================================== egress: stream

TRANSCRIPT = [
    ("message_start", {"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
                                                            "model": "claude", "content": [], "stop_reason": None,
                                                            "usage": {"input_tokens": 20, "output_tokens": 1,
                                                                      "cache_creation_input_tokens": 7,
                                                                      "cache_read_input_tokens": 30}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "thinking_delta", "thinking": "Let me think"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "signature_delta", "signature": "sig=="}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("ping", {"type": "ping"}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1,
                             "delta": {"type": "text_delta", "text": "Checking."}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
        "type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": ""}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 2,
                             "delta": {"type": "input_json_delta", "partial_json": 'ris"}'}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 2}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 12}}),
    ("message_stop", {"type": "message_stop"}),
]


def test_stream_to_hub_converts_the_reference_transcript() -> None:
    s = A.StreamToHub(model="claude", response_id=RID, created=CREATED)
    per_event = [s.feed(name, json.dumps(data)) for name, data in TRANSCRIPT]
    assert per_event[5] == [] and per_event[4] == []  # ping / block stop
    chunks = [c for group in per_event for c in group] + s.finish()
    assert all(c["id"] == RID and c["created"] == CREATED and c["model"] == "claude" for c in chunks)
    deltas = [c["choices"][0]["delta"] if c["choices"] else None for c in chunks]
    assert deltas[:4] == [{"role": "assistant", "content": ""}, {"reasoning_content": "Let me think"},
                          {"reasoning_signature": "sig=="}, {"content": "Checking."}]
    assert deltas[4] == {"tool_calls": [{"index": 0, "id": "toolu_01", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]}
    assert deltas[5:7] == [{"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]},
                           {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}]
    assert chunks[7]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[8]["choices"] == []
    assert chunks[8]["usage"]["prompt_tokens"] == 57
    assert chunks[8]["usage"]["completion_tokens"] == 12
    assert chunks[8]["usage"]["prompt_tokens_details"] == {"cached_tokens": 30, "cache_write_tokens": 7}
    assert len(chunks) == 9  # finish() does not repeat the usage chunk


def test_stream_to_hub_chunks_accumulate_in_the_openai_sdk() -> None:
    openai_chat = pytest.importorskip("openai.lib.streaming.chat")
    chunk_type = pytest.importorskip("openai.types.chat").ChatCompletionChunk
    s = A.StreamToHub(model="claude", response_id=RID, created=CREATED)
    state = openai_chat.ChatCompletionStreamState()
    for name, data in TRANSCRIPT:
        for c in s.feed(name, json.dumps(data)):
            state.handle_chunk(chunk_type.model_validate(c))
    final = state.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Checking."
    assert msg.tool_calls[0].id == "toolu_01"
    assert msg.tool_calls[0].function.name == "get_weather"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert final.usage.total_tokens == 69


def test_stream_to_hub_counts_tools_independently_of_block_index() -> None:
    s = A.StreamToHub(model="m", response_id=RID, created=CREATED)
    s.feed("message_start", json.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 1}}}))
    out = s.feed(None, json.dumps({"type": "content_block_start", "index": 3,
                                   "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}))
    out += s.feed(None, json.dumps({"type": "content_block_start", "index": 4,
                                    "content_block": {"type": "tool_use", "id": "u", "name": "g", "input": {}}}))
    assert [c["choices"][0]["delta"]["tool_calls"][0]["index"] for c in out] == [0, 1]


def test_stream_to_hub_without_message_stop_flushes_usage_in_finish() -> None:
    s = A.StreamToHub(model="m", response_id=RID, created=CREATED)
    s.feed("message_start", json.dumps({"type": "message_start", "message": {"usage": {"input_tokens": 9}}}))
    s.feed("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                        "usage": {"output_tokens": 4}}))
    tail = s.finish()
    assert tail[0]["usage"]["prompt_tokens"] == 9 and tail[0]["usage"]["completion_tokens"] == 4
    assert s.finish() == []


def test_stream_to_hub_raises_on_error_event() -> None:
    s = A.StreamToHub(model="m", response_id=RID, created=CREATED)
    with pytest.raises(UpstreamStreamError, match="Overloaded") as info:
        s.feed("error", json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert info.value.status == 529


# =========================================================================== errors


@pytest.mark.parametrize("status, kind, etype", [
    (400, "invalid_request", "invalid_request_error"), (401, "authentication", "authentication_error"),
    (403, "permission", "permission_error"), (404, "not_found", "not_found_error"),
    (429, "rate_limit", "rate_limit_error"), (500, "upstream", "api_error"), (502, "upstream", "api_error"),
    (503, "upstream", "overloaded_error"), (529, "upstream", "overloaded_error"), (504, "timeout", "timeout_error"),
    (422, "invalid_request", "invalid_request_error"),
])
def test_error_body(status: int, kind: str, etype: str) -> None:
    assert A.error_body(status, "Nope.", kind) == {"type": "error", "error": {"type": etype, "message": "Nope."}}


def test_count_tokens_response() -> None:
    assert A.count_tokens_response(42) == {"input_tokens": 42}


def test_cache_control_on_a_tool_result_survives_a_round_trip() -> None:
    body = {"max_tokens": 10, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "big output",
                                      "cache_control": {"type": "ephemeral"}}]}]}
    hub = A.request_to_hub(body, model="m")
    assert hub["messages"][2]["content"] == [{"type": "text", "text": "big output",
                                              "cache_control": {"type": "ephemeral"}}]
    back = A.request_from_hub(hub, model="claude")
    assert back["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "big output",
                                               "cache_control": {"type": "ephemeral"}}]


def test_request_from_hub_puts_late_tool_results_before_user_text() -> None:
    hub = {"messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "user", "content": "also this"},
        {"role": "tool", "tool_call_id": "t1", "content": "r"}]}
    turns = A.request_from_hub(hub, model="c")["messages"]
    assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": "t1", "content": "r"},
                                   {"type": "text", "text": "also this"}]
