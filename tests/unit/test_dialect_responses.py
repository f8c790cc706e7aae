"""OpenAI Responses ⇄ hub translation: requests, responses, streams, usage, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaykit.dialects import openai_responses as R
from relaykit.dialects.hub import UpstreamStreamError, hub_chunk, hub_usage_chunk

RID, CREATED = "resp_abc", 1700000000


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
    return hub_chunk(RID, CREATED, "up", delta, finish)


def usage_chunk(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return hub_usage_chunk(RID, CREATED, "up", {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning}})


def tool_delta(index: int, args: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        call.update(id=call_id, type="function")
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


def sdk_client(raw: bytes) -> Any:
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    transport = httpx2.MockTransport(lambda req: httpx2.Response(200, content=raw,
                                                                headers={"content-type": "text/event-stream"}))
    return openai.OpenAI(api_key="k", base_url="http://relay.test/v1", max_retries=0,
                         http_client=httpx2.Client(transport=transport))


# =========================================================================== ingress: request

REFERENCE_REQUEST = {
    "model": "gpt-4o",
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": [
            {"type": "input_text", "text": "Weather in Paris?"},
            {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "auto"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Need the tool."}],
         "encrypted_content": "gAAAA..."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp_c\":21}"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
    ],
    "tools": [{"type": "function", "name": "get_weather", "description": "...",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": False},
              {"type": "web_search"}],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "max_output_tokens": 512,
    "reasoning": {"effort": "medium", "summary": "auto"},
    "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True},
             "verbosity": "low"},
    "stream": True,
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "metadata": {"a": "b"},
}


def test_request_to_hub_reference_request() -> None:
    hub = R.request_to_hub(REFERENCE_REQUEST, model="claude-sonnet-4-5")
    assert hub["model"] == "claude-sonnet-4-5"
    msgs = hub["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[0]["content"] == "Be brief."
    assert msgs[1]["content"] == [{"type": "text", "text": "Weather in Paris?"},
                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR",
                                                                      "detail": "auto"}}]
    assert msgs[2] == {"role": "assistant", "content": None, "reasoning_content": "Need the tool.",
                       "tool_calls": [{"id": "call_1", "type": "function",
                                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp_c\":21}"}
    assert hub["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "...", "strict": False,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    assert hub["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert hub["max_completion_tokens"] == 512
    assert hub["reasoning_effort"] == "medium"
    assert hub["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "answer", "schema": {"type": "object"}, "strict": True}}
    assert hub["verbosity"] == "low"
    assert hub["stream"] is True
    for dropped in ("store", "include", "metadata", "instructions", "input"):
        assert dropped not in hub


def test_request_to_hub_string_input_and_assistant_history() -> None:
    assert R.request_to_hub({"input": "Hi"}, model="m")["messages"] == [{"role": "user", "content": "Hi"}]
    hub = R.request_to_hub({"input": [
        {"type": "message", "role": "developer", "content": "rules"},
        {"role": "user", "content": "2+2?"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "4", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "check", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "check", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1",
         "output": [{"type": "input_text", "text": "ok"}, {"type": "input_image", "image_url": "https://x/i.png"}]},
        {"type": "function_call_output", "call_id": "c2", "output": "ok2"},
        {"role": "user", "content": [{"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}]},
    ]}, model="m")
    msgs = hub["messages"]
    assert [m["role"] for m in msgs] == ["developer", "user", "assistant", "tool", "tool", "user"]
    assert msgs[2]["content"] == "4"
    assert [c["id"] for c in msgs[2]["tool_calls"]] == ["c1", "c2"]
    assert msgs[3]["content"] == "ok"
    assert msgs[5]["content"] == [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBER",
                                                            "filename": "a.pdf"}}]


@pytest.mark.parametrize("body, fragment", [
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": "x", "conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"input": "x", "background": True}, "Background"),
    ({"input": 5}, "input"),
    ({"instructions": "only"}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}, "file ids"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "call_id"),
    ({"input": [{"role": "tool", "content": "x"}]}, "role"),
])
def test_request_to_hub_rejects_invalid_or_stateful_input(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        R.request_to_hub(body, model="m")


# =========================================================================== ingress: response


def test_response_from_hub_is_a_response_the_sdk_reads() -> None:
    responses = pytest.importorskip("openai.types.responses")
    hub = {"id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "up",
           "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
               "role": "assistant", "content": "Hi there", "reasoning_content": "thinking",
               "tool_calls": [{"id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]}}],
           "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16,
                     "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 1}}}
    body = R.response_from_hub(hub, model="gpt-4o")
    resp = responses.Response.model_validate(body)
    assert resp.output_text == "Hi there"
    assert [o.type for o in resp.output] == ["reasoning", "message", "function_call"]
    assert resp.output[0].summary[0].text == "thinking"
    assert (resp.output[2].call_id, resp.output[2].name) == ("call_1", "get_weather")
    assert resp.status == "completed" and resp.model == "gpt-4o" and resp.created_at == CREATED
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (12, 4, 16)
    assert resp.usage.input_tokens_details.cached_tokens == 2
    assert resp.usage.output_tokens_details.reasoning_tokens == 1


@pytest.mark.parametrize("finish, status, reason", [
    ("stop", "completed", None), ("tool_calls", "completed", None),
    ("length", "incomplete", "max_output_tokens"), ("content_filter", "incomplete", "content_filter"),
])
def test_finish_reason_to_status(finish: str, status: str, reason: str | None) -> None:
    hub = {"id": "r", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}]}
    body = R.response_from_hub(hub, model="m")
    assert body["status"] == status
    assert body["incomplete_details"] == (None if reason is None else {"reason": reason})


# =========================================================================== ingress: stream


def test_stream_from_hub_canonical_event_sequence() -> None:
    s = R.StreamFromHub(model="gpt-4o", response_id=RID, created=CREATED)
    raw = b"".join(s.feed(c) for c in [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"}), chunk({"content": " there"}),
        tool_delta(0, "", "call_1", "get_weather"), tool_delta(0, "{\"city\":"), tool_delta(0, "\"Paris\"}"),
        chunk({}, "tool_calls"), usage_chunk(12, 4, cached=2)]) + s.close()
    events = sse_events(raw)
    assert all(name == data["type"] for name, data in events)
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert [n for n, _ in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    by_type = {n: d for n, d in events}
    assert by_type["response.created"]["response"]["status"] == "in_progress"
    assert by_type["response.created"]["response"]["output"] == []
    assert all(d["response"]["id"] == RID for n, d in events if "response" in d)
    assert by_type["response.output_text.done"]["text"] == "Hi there"
    fc_added = events[9][1]
    assert fc_added["output_index"] == 1
    assert fc_added["item"] == {"type": "function_call", "id": fc_added["item"]["id"], "call_id": "call_1",
                                "name": "get_weather", "arguments": "", "status": "in_progress"}
    assert by_type["response.function_call_arguments.done"]["arguments"] == "{\"city\":\"Paris\"}"
    final = by_type["response.completed"]["response"]
    assert final["status"] == "completed"
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["usage"] == {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
                              "output_tokens": 4,
                              "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 16}


def test_stream_from_hub_emits_each_text_delta_immediately() -> None:
    s = R.StreamFromHub(model="m", response_id=RID, created=CREATED)
    first = sse_events(s.feed(chunk({"content": "Hel"})))
    assert [n for n, _ in first][-1] == "response.output_text.delta" and first[-1][1]["delta"] == "Hel"
    second = sse_events(s.feed(chunk({"content": "lo"})))
    assert [(n, d["delta"]) for n, d in second] == [("response.output_text.delta", "lo")]


def test_stream_from_hub_parses_in_the_sdk_helper() -> None:
    s = R.StreamFromHub(model="gpt-4o", response_id=RID, created=CREATED)
    raw = b"".join(s.feed(c) for c in [
        chunk({"role": "assistant", "content": ""}), chunk({"reasoning_content": "Let me think"}),
        chunk({"content": "Hi"}), chunk({"content": " there"}),
        tool_delta(0, "", "call_1", "get_weather"), tool_delta(1, "{\"city\":\"Rome\"}", "call_2", "get_weather"),
        tool_delta(0, "{\"city\":\"Paris\"}"),  # fragments may interleave between parallel calls
        chunk({}, "tool_calls"), usage_chunk(12, 4, reasoning=2)]) + s.close()
    client = sdk_client(raw)
    with client.responses.stream(model="gpt-4o", input="hi") as stream:
        deltas = [ev.delta for ev in stream if ev.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hi", " there"]
    assert final.output_text == "Hi there"
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.call_id, json.loads(c.arguments)) for c in calls] == [("call_1", {"city": "Paris"}),
                                                                     ("call_2", {"city": "Rome"})]
    assert final.output[0].type == "reasoning" and final.output[0].summary[0].text == "Let me think"
    assert final.usage.output_tokens_details.reasoning_tokens == 2


def test_stream_from_hub_truncated_answer_is_incomplete() -> None:
    s = R.StreamFromHub(model="m", response_id=RID, created=CREATED)
    raw = s.feed(chunk({"content": "abc"})) + s.feed(chunk({}, "length")) + s.close()
    name, data = sse_events(raw)[-1]
    assert name == "response.incomplete"
    assert data["response"]["status"] == "incomplete"
    assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["response"]["output"][0]["content"][0]["text"] == "abc"


def test_stream_error_is_a_failed_response_the_sdk_surfaces() -> None:
    s = R.StreamFromHub(model="m", response_id=RID, created=CREATED)
    raw = s.feed(chunk({"content": "par"})) + s.error("The upstream broke.", 502)
    assert s.close() == b""
    name, data = sse_events(raw)[-1]
    assert name == "response.failed"
    assert data["response"]["error"] == {"code": "server_error", "message": "The upstream broke."}
    client = sdk_client(raw)
    with client.responses.stream(model="m", input="hi") as stream:
        failed = [ev for ev in stream if ev.type == "response.failed"]
        with pytest.raises(RuntimeError, match="response.completed"):
            stream.get_final_response()
    assert failed[0].response.error.message == "The upstream broke."


def test_error_before_any_chunk_still_starts_with_response_created() -> None:
    s = R.StreamFromHub(model="m", response_id=RID, created=CREATED)
    assert [n for n, _ in sse_events(s.error("boom", 500))] == ["response.created", "response.in_progress",
                                                                "response.failed"]


# =========================================================================== egress: request


def test_request_from_hub_builds_input_items() -> None:
    hub = {"model": "x", "stream": True, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/i.png", "detail": "low"}}]},
        {"role": "assistant", "content": "Checking.", "reasoning_content": "dropped", "reasoning_signature": "dropped",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "21C"}]}],
        "tools": [{"type": "function", "function": {"name": "w", "description": "weather",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "w"}}, "parallel_tool_calls": False,
        "max_tokens": 99, "temperature": 0.4, "reasoning_effort": "low", "stop": ["x"], "seed": 1,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"},
                                                                   "strict": True}}}
    body = R.request_from_hub(hub, model="o3")
    assert body["model"] == "o3" and body["store"] is False and body["stream"] is True
    assert body["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                                     {"type": "input_image", "image_url": "https://x/i.png", "detail": "low"}]},
        {"role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "w", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "21C"}]
    assert body["tools"] == [{"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": False,
                              "description": "weather"}]
    assert body["tool_choice"] == {"type": "function", "name": "w"}
    assert body["parallel_tool_calls"] is False
    assert body["max_output_tokens"] == 99 and body["temperature"] == 0.4
    assert body["reasoning"] == {"effort": "low"}
    assert body["text"] == {"format": {"type": "json_schema", "name": "a", "schema": {"type": "object"}, "strict": True}}
    assert "stop" not in body and "seed" not in body


def test_request_from_hub_rejects_audio_and_several_choices() -> None:
    with pytest.raises(ValueError, match="audio"):
        R.request_from_hub({"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}, model="m")
    with pytest.raises(ValueError, match="n > 1"):
        R.request_from_hub({"messages": [{"role": "user", "content": "x"}], "n": 3}, model="m")


# =========================================================================== egress: response

REFERENCE_RESPONSE = {
    "id": "resp_1", "object": "response", "created_at": CREATED, "model": "gpt-4o", "status": "completed",
    "error": None, "incomplete_details": None,
    "output": [
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan"}],
         "encrypted_content": "gAAA"},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hi there", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
         "arguments": "{\"city\":\"Paris\"}", "status": "completed"}],
    "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 5},
              "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 16},
}


def test_response_to_hub_reference_response() -> None:
    hub = R.response_to_hub(REFERENCE_RESPONSE, model="gpt-4o", response_id="chatcmpl-1", created=CREATED)
    assert hub["id"] == "chatcmpl-1"
    msg = hub["choices"][0]["message"]
    assert msg["content"] == "Hi there" and msg["reasoning_content"] == "Plan"
    assert msg["tool_calls"] == [{"id": "call_1", "type": "function",
                                  "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]
    assert hub["choices"][0]["finish_reason"] == "tool_calls"
    assert hub["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16,
                            "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 2}}


def test_response_to_hub_incomplete_refusal_and_failure() -> None:
    incomplete = dict(REFERENCE_RESPONSE, status="incomplete", incomplete_details={"reason": "max_output_tokens"},
                      output=[REFERENCE_RESPONSE["output"][1]])
    assert R.response_to_hub(incomplete, model="m", response_id="r", created=0)["choices"][0]["finish_reason"] == "length"
    refused = dict(REFERENCE_RESPONSE, output=[{"type": "message", "role": "assistant", "content": [
        {"type": "refusal", "refusal": "I can't help with that."}]}])
    msg = R.response_to_hub(refused, model="m", response_id="r", created=0)["choices"][0]["message"]
    assert msg["refusal"] == "I can't help with that." and msg["content"] is None
    failed = dict(REFERENCE_RESPONSE, status="failed", error={"code": "server_error", "message": "Model crashed"})
    with pytest.raises(UpstreamStreamError, match="Model crashed"):
        R.response_to_hub(failed, model="m", response_id="r", created=0)


# =========================================================================== egress: stream


def reference_stream() -> list[tuple[str, dict[str, Any]]]:
    """The 2.3 sequence as a real Responses upstream sends it."""
    snapshot = {"id": "resp_1", "object": "response", "created_at": CREATED, "model": "gpt-4o",
                "status": "in_progress", "output": []}
    msg = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []}
    fc = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "",
          "status": "in_progress"}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": snapshot},
        {"type": "response.in_progress", "response": snapshot},
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning", "id": "rs_1",
                                                                           "summary": []}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0,
         "delta": "First."},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 1,
         "delta": "Second."},
        {"type": "response.output_item.added", "output_index": 1, "item": msg},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "delta": "Hi", "logprobs": []},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "delta": " there", "logprobs": []},
        {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 1, "content_index": 0,
         "text": "Hi there", "logprobs": []},
        {"type": "response.output_item.added", "output_index": 2, "item": fc},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2,
         "delta": "{\"city\":"},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 2, "delta": "\"Paris\"}"},
        {"type": "response.function_call_arguments.done", "item_id": "fc_1", "output_index": 2,
         "arguments": "{\"city\":\"Paris\"}"},
        {"type": "response.completed", "response": dict(REFERENCE_RESPONSE, status="completed")},
    ]
    return [(e["type"], dict(e, sequence_number=i)) for i, e in enumerate(events)]


def test_stream_to_hub_reference_stream_accumulates_in_the_openai_sdk() -> None:
    openai_chat = pytest.importorskip("openai.lib.streaming.chat")
    chunk_type = pytest.importorskip("openai.types.chat").ChatCompletionChunk
    s = R.StreamToHub(model="gpt-4o", response_id="chatcmpl-1", created=CREATED)
    per_event = [s.feed(name, json.dumps(data)) for name, data in reference_stream()]
    assert [c["choices"][0]["delta"] for c in per_event[0]] == [{"role": "assistant", "content": ""}]
    assert [c["choices"][0]["delta"] for c in per_event[7]] == [{"content": "Hi"}]  # one delta in, one chunk out
    assert per_event[9] == [] and per_event[13] == []  # done events repeat what the deltas said
    chunks = [c for group in per_event for c in group] + s.finish()
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 5
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    state = openai_chat.ChatCompletionStreamState()
    for c in chunks:
        state.handle_chunk(chunk_type.model_validate(c))
    final = state.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Hi there"
    assert msg.model_extra.get("reasoning_content") == "First.\n\nSecond."
    assert (msg.tool_calls[0].id, msg.tool_calls[0].function.name) == ("call_1", "get_weather")
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert final.usage.total_tokens == 16


def test_stream_to_hub_uses_done_events_when_no_deltas_came() -> None:
    s = R.StreamToHub(model="m", response_id="c", created=0)
    s.feed(None, json.dumps({"type": "response.created", "response": {"id": "r"}}))
    s.feed(None, json.dumps({"type": "response.output_item.added", "output_index": 0,
                             "item": {"type": "function_call", "id": "fc", "call_id": "c1", "name": "f"}}))
    args = s.feed(None, json.dumps({"type": "response.function_call_arguments.done", "item_id": "fc",
                                    "output_index": 0, "arguments": "{\"a\":1}"}))
    assert args[0]["choices"][0]["delta"] == {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}
    text = s.feed(None, json.dumps({"type": "response.output_text.done", "item_id": "m", "text": "whole"}))
    assert text[0]["choices"][0]["delta"] == {"content": "whole"}
    end = s.feed(None, json.dumps({"type": "response.incomplete", "response": {
        "incomplete_details": {"reason": "content_filter"}}}))
    assert end[0]["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize("event", [
    {"type": "response.failed", "response": {"status": "failed", "error": {"code": "server_error",
                                                                           "message": "Model crashed"}}},
    {"type": "error", "code": "server_error", "message": "Model crashed", "param": None},
])
def test_stream_to_hub_raises_on_upstream_failure(event: dict[str, Any]) -> None:
    s = R.StreamToHub(model="m", response_id="c", created=0)
    with pytest.raises(UpstreamStreamError, match="Model crashed"):
        s.feed(event["type"], json.dumps(event))


# =========================================================================== errors


@pytest.mark.parametrize("status, kind, etype, code", [
    (400, "invalid_request", "invalid_request_error", None),
    (401, "authentication", "authentication_error", "invalid_api_key"),
    (403, "permission", "permission_error", "permission_denied"),
    (404, "not_found", "invalid_request_error", "not_found"),
    (402, "insufficient_quota", "insufficient_quota", "insufficient_quota"),
    (429, "rate_limit", "rate_limit_error", "rate_limit_exceeded"),
    (502, "upstream", "server_error", "upstream_error"),
    (504, "timeout", "server_error", "upstream_timeout"),
    (503, "unavailable", "server_error", "unavailable"),
])
def test_error_body(status: int, kind: str, etype: str, code: str | None) -> None:
    assert R.error_body(status, "Nope.", kind) == {"error": {"message": "Nope.", "type": etype, "param": None,
                                                             "code": code}}


def test_count_tokens_response_parses_in_the_sdk() -> None:
    responses = pytest.importorskip("openai.types.responses")
    body = R.count_tokens_response(42)
    assert responses.InputTokenCountResponse.model_validate(body).input_tokens == 42
