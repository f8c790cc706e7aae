"""Gemini generateContent ⇄ hub translation: requests, responses, streams, usage, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relaykit.dialects import gemini as G
from relaykit.dialects.hub import (
    GEMINI_DUMMY_SIGNATURE,
    UpstreamStreamError,
    hub_chunk,
    hub_usage_chunk,
)

RID, CREATED = "chatcmpl-abc", 1700000000


def frames(raw: bytes) -> list[dict[str, Any]]:
    """Parse Gemini SSE: every event must be exactly one ``data: `` line."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        out.append(json.loads(block[len("data: "):]))
    return out


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return hub_chunk(RID, CREATED, "up", delta, finish)


def usage_chunk(prompt: int, completion: int, reasoning: int = 0, cached: int = 0) -> dict[str, Any]:
    return hub_usage_chunk(RID, CREATED, "up", {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning}})


def sdk_client(raw: bytes, status: int = 200) -> Any:
    genai = pytest.importorskip("google.genai")
    httpx2 = pytest.importorskip("httpx2")
    transport = httpx2.MockTransport(lambda req: httpx2.Response(status, content=raw,
                                                                headers={"content-type": "text/event-stream"}))
    options = genai.types.HttpOptions(base_url="http://relay.test", client_args={"transport": transport})
    return genai.Client(api_key="k", http_options=options)


# =========================================================================== ingress: request

REFERENCE_REQUEST = {
    "systemInstruction": {"role": "user", "parts": [{"text": "Be brief."}]},
    "contents": [
        {"role": "user", "parts": [{"text": "What is in this picture?"},
                                   {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KG"}}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                     "thoughtSignature": "c2ln"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "w", "parameters": {
        "type": "OBJECT", "properties": {"city": {"type": "STRING", "nullable": True}}, "required": ["city"]}}]},
        {"googleSearch": {}}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    "generationConfig": {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 512, "stopSequences": ["END"],
                         "candidateCount": 1, "responseMimeType": "application/json", "topK": 3,
                         "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
}


def test_request_to_hub_reference_request() -> None:
    hub = G.request_to_hub(REFERENCE_REQUEST, model="gpt-4o")
    assert "stream" not in hub  # the caller decides from the URL
    msgs = hub["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool"]
    assert msgs[0]["content"] == "Be brief."
    assert msgs[1]["content"] == [{"type": "text", "text": "What is in this picture?"},
                                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KG"}}]
    call = msgs[2]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert msgs[3] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    fn = hub["tools"][0]["function"]
    assert fn["parameters"] == {"type": "object", "properties": {"city": {"type": ["string", "null"]}},
                                "required": ["city"]}
    assert len(hub["tools"]) == 1
    assert hub["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (hub["temperature"], hub["top_p"], hub["max_completion_tokens"], hub["stop"], hub["n"]) == \
        (0.2, 0.9, 512, ["END"], 1)
    assert hub["response_format"] == {"type": "json_object"}
    assert hub["reasoning_effort"] == "low"


def test_request_to_hub_snake_case_ids_and_parallel_calls_by_name_and_order() -> None:
    body = {"system_instruction": {"parts": [{"text": "sys"}]}, "contents": [
        {"role": "user", "parts": [{"text": "go"}]},
        {"role": "model", "parts": [{"text": "thinking", "thought": True},
                                    {"function_call": {"name": "f", "args": {"n": 1}}},
                                    {"function_call": {"name": "f", "args": {"n": 2}}},
                                    {"function_call": {"name": "g", "args": {}, "id": "gid"}}]},
        {"role": "user", "parts": [{"function_response": {"name": "g", "id": "gid", "response": {"ok": True}}},
                                   {"function_response": {"name": "f", "response": {"output": "one"}}},
                                   {"function_response": {"name": "f", "response": {"output": "two"}}},
                                   {"text": "and now?"}]}],
        "generation_config": {"response_json_schema": {"type": "object"},
                              "thinking_config": {"thinking_level": "HIGH"}}}
    hub = G.request_to_hub(body, model="m")
    msgs = hub["messages"]
    assert msgs[0] == {"role": "system", "content": "sys"}
    ids = [c["id"] for c in msgs[2]["tool_calls"]]
    assert msgs[2]["content"] is None  # the thought part is dropped
    assert len(set(ids)) == 3 and ids[2] == "gid"
    assert [(m["tool_call_id"], m["content"]) for m in msgs[3:6]] == [("gid", '{"ok":true}'), (ids[0], "one"),
                                                                      (ids[1], "two")]
    assert msgs[6] == {"role": "user", "content": "and now?"}
    assert hub["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert hub["reasoning_effort"] == "high"


@pytest.mark.parametrize("body, fragment", [
    ({}, "contents"),
    ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "role"),
    ({"contents": [{"role": "user"}]}, "parts"),
    ({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "does not answer"),
    ({"contents": [{"role": "user", "parts": [{"fileData": {"mimeType": "application/pdf", "fileUri": "gs://x"}}]}]},
     "fileData"),
])
def test_request_to_hub_rejects_invalid_input(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        G.request_to_hub(body, model="m")


def test_thought_signature_survives_a_gemini_round_trip() -> None:
    hub = G.request_to_hub(REFERENCE_REQUEST, model="gemini-3-pro")
    upstream = G.request_from_hub(hub, model="gemini-3-pro")
    model_turn = upstream["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "c2ln"
    assert upstream["contents"][2]["parts"][0]["functionResponse"] == {"name": "get_weather",
                                                                       "response": {"result": "sunny"}}


# =========================================================================== ingress: response

HUB_RESPONSE = {
    "id": "chatcmpl-9", "object": "chat.completion", "created": CREATED, "model": "gpt-4o",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "Hello", "reasoning_content": "hmm",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'},
                        "extra_content": {"google": {"thought_signature": "c2ln"}}},
                       {"id": "call_2", "type": "function", "function": {"name": "v", "arguments": "oops"}}]}}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17,
              "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 3}},
}


def test_response_from_hub_validates_in_the_sdk() -> None:
    genai = pytest.importorskip("google.genai")
    body = G.response_from_hub(HUB_RESPONSE, model="gemini-2.5-flash")
    resp = genai.types.GenerateContentResponse.model_validate(body)  # the SDK forbids unknown fields
    parts = resp.candidates[0].content.parts
    assert parts[0].thought is True and parts[0].text == "hmm"
    assert parts[1].text == "Hello"
    assert parts[2].function_call.args == {"city": "Paris"} and parts[2].thought_signature == b"sig"
    assert parts[3].function_call.args == {"arguments": "oops"}
    assert resp.candidates[0].finish_reason == "STOP"
    u = resp.usage_metadata
    assert (u.prompt_token_count, u.candidates_token_count, u.thoughts_token_count, u.cached_content_token_count,
            u.total_token_count) == (10, 4, 3, 4, 17)
    assert resp.model_version == "gemini-2.5-flash"


@pytest.mark.parametrize("finish, reason", [("stop", "STOP"), ("length", "MAX_TOKENS"),
                                            ("content_filter", "SAFETY"), ("tool_calls", "STOP")])
def test_finish_reason_to_gemini(finish: str, reason: str) -> None:
    resp = {"id": "r", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"},
                                    "finish_reason": finish}]}
    assert G.response_from_hub(resp, model="m")["candidates"][0]["finishReason"] == reason


# =========================================================================== ingress: stream


def test_stream_from_hub_text_immediately_tools_whole_then_final_chunk() -> None:
    s = G.StreamFromHub(model="gemini-2.5-flash", response_id="r1", created=CREATED)
    assert s.feed(chunk({"role": "assistant", "content": ""})) == b""
    thought = frames(s.feed(chunk({"reasoning_content": "hmm"})))
    assert thought[0]["candidates"][0]["content"]["parts"] == [{"text": "hmm", "thought": True}]
    first = frames(s.feed(chunk({"content": "Hel"})))
    second = frames(s.feed(chunk({"content": "lo"})))
    assert [f["candidates"][0]["content"]["parts"] for f in first + second] == [[{"text": "Hel"}], [{"text": "lo"}]]
    assert s.feed(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": "w", "arguments": '{"ci'}}]})) == b""
    assert s.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]})) == b""
    at_finish = frames(s.feed(chunk({}, "tool_calls")))
    assert at_finish == [{"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "w", "args": {"city": "Paris"}, "id": "call_1"}}]}, "index": 0}],
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"}]
    final = frames(s.feed(usage_chunk(5, 7, reasoning=2)))
    assert final[0]["candidates"][0]["finishReason"] == "STOP"
    assert final[0]["usageMetadata"] == {"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 12,
                                         "thoughtsTokenCount": 2}
    assert s.close() == b""


def test_stream_from_hub_without_usage_finishes_on_close() -> None:
    s = G.StreamFromHub(model="m", response_id="r1", created=CREATED)
    s.feed(chunk({"content": "x"}))
    assert s.feed(chunk({}, "length")) == b""
    final = frames(s.close())
    assert final[0]["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert "usageMetadata" not in final[0]


def test_stream_from_hub_parses_in_the_sdk() -> None:
    s = G.StreamFromHub(model="gemini-2.5-flash", response_id="r1", created=CREATED)
    raw = b"".join(s.feed(c) for c in [
        chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "w", "arguments": '{"city":"Rome"}'}}]}),
        chunk({}, "tool_calls"), usage_chunk(5, 2)]) + s.close()
    client = sdk_client(raw)
    got = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    texts = [p.text for c in got for p in c.candidates[0].content.parts if p.text]
    assert texts == ["Hel", "lo"]
    calls = [p.function_call for c in got for p in c.candidates[0].content.parts if p.function_call]
    assert [(fc.name, fc.args) for fc in calls] == [("w", {"city": "Rome"})]
    assert got[-1].candidates[0].finish_reason == "STOP"
    assert got[-1].usage_metadata.total_token_count == 7


def test_stream_error_frame_raises_in_the_sdk() -> None:
    genai = pytest.importorskip("google.genai")
    s = G.StreamFromHub(model="m", response_id="r1", created=CREATED)
    raw = s.feed(chunk({"content": "partial"})) + s.error("Upstream timed out", 504)
    assert frames(raw)[-1] == {"error": {"code": 504, "message": "Upstream timed out", "status": "DEADLINE_EXCEEDED"}}
    assert s.close() == b""
    client = sdk_client(raw)
    with pytest.raises(genai.errors.ServerError, match="Upstream timed out"):
        list(client.models.generate_content_stream(model="m", contents="hi"))


# =========================================================================== egress: request


def test_request_from_hub_builds_contents_the_sdk_accepts() -> None:
    genai = pytest.importorskip("google.genai")
    hub = {"model": "x", "stream": True, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Look"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw=="}},
                                     {"type": "image_url", "image_url": {"url": "https://x.test/cat.webp?s=1"}},
                                     {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}]},
        {"role": "assistant", "content": "Let me check.", "reasoning_content": "dropped",
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
                        {"id": "c2", "type": "function", "function": {"name": "v", "arguments": "{bad"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp_c": 21}'},
        {"role": "tool", "tool_call_id": "c2", "content": "plain text"},
        {"role": "user", "content": "thanks"}]}
    body = G.request_from_hub(hub, model="gemini-2.5-flash")
    assert "model" not in body and "stream" not in body
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    contents = body["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"][1:] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw=="}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp?s=1"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}}]
    assert contents[1]["parts"] == [{"text": "Let me check."},
                                    {"functionCall": {"name": "w", "args": {"city": "Paris"}}},
                                    {"functionCall": {"name": "v", "args": {"arguments": "{bad"}}}]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "w", "response": {"temp_c": 21}}},
                                    {"functionResponse": {"name": "v", "response": {"result": "plain text"}}},
                                    {"text": "thanks"}]
    for content in contents:
        genai.types.Content.model_validate(content)


def test_request_from_hub_tools_schemas_and_generation_config() -> None:
    genai = pytest.importorskip("google.genai")
    hub = {"messages": [{"role": "user", "content": "x"}],
           "tools": [
               {"type": "function", "function": {"name": "w", "description": "weather", "strict": True, "parameters": {
                   "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
                   "properties": {"city": {"type": "string", "format": "uri"}, "n": {"type": ["integer", "null"]},
                                  "unit": {"const": "c"}, "tags": {"type": "array", "items": {"type": "string"}}},
                   "required": ["city"]}}},
               {"type": "function", "function": {"name": "ref", "parameters": {
                   "type": "object", "$defs": {"P": {"type": "string"}}, "properties": {"p": {"$ref": "#/$defs/P"}}}}},
               {"type": "function", "function": {"name": "noargs", "parameters": {"type": "object", "properties": {}}}}],
           "tool_choice": {"type": "function", "function": {"name": "w"}},
           "temperature": 0.5, "top_p": 0.8, "seed": 7, "max_completion_tokens": 100,
           "stop": ["a", "b", "c", "d", "e", "f"], "presence_penalty": 0.1,
           "response_format": {"type": "json_schema", "json_schema": {"name": "o", "schema": {
               "type": "object", "properties": {"x": {"type": "number"}}}}},
           "reasoning_effort": "medium"}
    body = G.request_from_hub(hub, model="gemini-2.5-flash")
    decls = body["tools"][0]["functionDeclarations"]
    assert decls[0] == {"name": "w", "description": "weather", "parameters": {
        "type": "OBJECT", "properties": {"city": {"type": "STRING"}, "n": {"nullable": True, "type": "INTEGER"},
                                         "unit": {"enum": ["c"]}, "tags": {"type": "ARRAY", "items": {"type": "STRING"}}},
        "required": ["city"]}}
    assert "parametersJsonSchema" in decls[1] and "parameters" not in decls[1]
    assert decls[2] == {"name": "noargs"}
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}}
    cfg = body["generationConfig"]
    assert cfg["stopSequences"] == ["a", "b", "c", "d", "e"]
    assert (cfg["temperature"], cfg["topP"], cfg["seed"], cfg["maxOutputTokens"], cfg["presencePenalty"]) == \
        (0.5, 0.8, 7, 100, 0.1)
    assert cfg["responseMimeType"] == "application/json"
    assert cfg["responseSchema"] == {"type": "OBJECT", "properties": {"x": {"type": "NUMBER"}}}
    assert cfg["thinkingConfig"] == {"thinkingBudget": 8192, "includeThoughts": True}
    genai.types.Tool.model_validate(body["tools"][0])
    genai.types.GenerationConfig.model_validate(cfg)


@pytest.mark.parametrize("model, effort, expected", [
    ("gemini-3-pro-preview", "low", {"thinkingLevel": "low", "includeThoughts": True}),
    ("gemini-3-flash", "high", {"thinkingLevel": "high", "includeThoughts": True}),
    ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
    ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
    ("gemini-2.0-flash", "high", None),
])
def test_request_from_hub_thinking_config_per_model(model: str, effort: str, expected: dict[str, Any] | None) -> None:
    body = G.request_from_hub({"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort}, model=model)
    assert body.get("generationConfig", {}).get("thinkingConfig") == expected


def test_request_from_hub_dummy_signature_only_for_gemini_3() -> None:
    hub = {"messages": [{"role": "user", "content": "x"},
                        {"role": "assistant", "tool_calls": [
                            {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                            {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                        {"role": "tool", "tool_call_id": "a", "content": "1"},
                        {"role": "tool", "tool_call_id": "b", "content": "2"}]}
    three = G.request_from_hub(hub, model="gemini-3-pro")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in three] == [GEMINI_DUMMY_SIGNATURE, None]
    two = G.request_from_hub(hub, model="gemini-2.5-flash")["contents"][1]["parts"]
    assert all("thoughtSignature" not in p for p in two)


@pytest.mark.parametrize("hub, fragment", [
    ({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]}, "nope"),
    ({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f1"}}]}]}, "file"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]}, "Image"),
])
def test_request_from_hub_rejects_what_gemini_cannot_take(hub: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        G.request_from_hub(hub, model="gemini-2.5-flash")


def test_upstream_path() -> None:
    assert G.upstream_path("gemini-2.5-flash", True) == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert G.upstream_path("models/gemini-2.5-flash", False) == "/v1beta/models/gemini-2.5-flash:generateContent"


# =========================================================================== egress: response


def test_response_to_hub_reference_response() -> None:
    body = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "Let me see", "thought": True}, {"text": "Hello"},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}]},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 12,
                          "thoughtsTokenCount": 4, "cachedContentTokenCount": 2},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"}
    hub = G.response_to_hub(body, model="gemini-2.5-flash", response_id=RID, created=CREATED)
    msg = hub["choices"][0]["message"]
    assert msg["content"] == "Hello" and msg["reasoning_content"] == "Let me see"
    call = msg["tool_calls"][0]
    assert call["id"] == "call_chatcmpl-abc_0"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert hub["choices"][0]["finish_reason"] == "tool_calls"
    assert hub["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12,
                            "prompt_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
                            "completion_tokens_details": {"reasoning_tokens": 4}}


@pytest.mark.parametrize("reason, finish", [
    ("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"), ("MALFORMED_FUNCTION_CALL", "stop"), ("OTHER", "stop"),
])
def test_finish_reason_from_gemini(reason: str, finish: str) -> None:
    body = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": reason}]}
    assert G.response_to_hub(body, model="m", response_id=RID, created=CREATED)["choices"][0]["finish_reason"] == finish


def test_response_to_hub_blocked_prompt_and_inline_image() -> None:
    blocked = G.response_to_hub({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}},
                                model="m", response_id=RID, created=CREATED)
    assert blocked["choices"][0]["finish_reason"] == "content_filter"
    assert blocked["usage"]["prompt_tokens"] == 3
    image = G.response_to_hub({"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}]}, "finishReason": "STOP"}]},
        model="m", response_id=RID, created=CREATED)
    assert image["choices"][0]["message"]["content"] == "![image](data:image/png;base64,iVBOR)"
    with pytest.raises(UpstreamStreamError, match="quota"):
        G.response_to_hub({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}},
                          model="m", response_id=RID, created=CREATED)


def test_usage_from_body_counts_thoughts_and_tool_prompt() -> None:
    usage = G.usage_from_body({"usage_metadata": {"prompt_token_count": 10, "tool_use_prompt_token_count": 2,
                                                  "candidates_token_count": 5, "thoughts_token_count": 3}})
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (12, 8, 20)
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 3


# =========================================================================== egress: stream


def test_stream_to_hub_reference_transcript() -> None:
    s = G.StreamToHub(model="gemini-2.5-flash", response_id=RID, created=CREATED)
    first = s.feed(None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]},
                                                     "index": 0}],
                                     "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}))
    assert [c["choices"][0]["delta"] for c in first] == [{"role": "assistant", "content": ""}, {"content": "Hel"}]
    second = s.feed(None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                                                      "finishReason": "STOP", "index": 0}],
                                      "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2,
                                                        "totalTokenCount": 7}}))
    assert [c["choices"][0]["delta"] for c in second] == [{"content": "lo"}, {}]
    assert second[-1]["choices"][0]["finish_reason"] == "stop"
    tail = s.finish()
    assert tail[0]["choices"] == [] and tail[0]["usage"]["total_tokens"] == 7
    assert tail[0]["usage"]["completion_tokens"] == 2
    assert s.finish() == []


def test_stream_to_hub_function_calls_are_whole_and_accumulate_in_the_openai_sdk() -> None:
    openai_chat = pytest.importorskip("openai.lib.streaming.chat")
    chunk_type = pytest.importorskip("openai.types.chat").ChatCompletionChunk
    s = G.StreamToHub(model="g", response_id=RID, created=CREATED)
    out = s.feed(None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "thinking...", "thought": True},
        {"functionCall": {"name": "w", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "w", "args": {"city": "Rome"}}}]}, "finishReason": "STOP"}]}))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in out if "tool_calls" in c["choices"][0]["delta"]]
    assert [(c["index"], c["function"]["arguments"]) for c in calls] == [(0, '{"city":"Paris"}'), (1, '{"city":"Rome"}')]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "c2ln"}}
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"
    state = openai_chat.ChatCompletionStreamState()
    for c in out:
        state.handle_chunk(chunk_type.model_validate(c))
    final = state.get_final_completion().choices[0].message
    assert [json.loads(tc.function.arguments) for tc in final.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert final.model_extra.get("reasoning_content") == "thinking..."


def test_stream_to_hub_raises_on_error_chunk_and_handles_blocked_prompt() -> None:
    s = G.StreamToHub(model="g", response_id=RID, created=CREATED)
    with pytest.raises(UpstreamStreamError, match="Resource exhausted") as info:
        s.feed(None, json.dumps({"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}))
    assert info.value.status == 429
    blocked = G.StreamToHub(model="g", response_id=RID, created=CREATED)
    out = blocked.feed(None, json.dumps({"promptFeedback": {"blockReason": "OTHER"}}))
    assert out[-1]["choices"][0]["finish_reason"] == "content_filter"


# =========================================================================== errors


@pytest.mark.parametrize("status, kind, name", [
    (400, "invalid_request", "INVALID_ARGUMENT"), (401, "authentication", "UNAUTHENTICATED"),
    (403, "permission", "PERMISSION_DENIED"), (404, "not_found", "NOT_FOUND"), (429, "rate_limit", "RESOURCE_EXHAUSTED"),
    (402, "insufficient_quota", "RESOURCE_EXHAUSTED"), (500, "upstream", "INTERNAL"), (503, "upstream", "UNAVAILABLE"),
    (504, "timeout", "DEADLINE_EXCEEDED"),
])
def test_error_body(status: int, kind: str, name: str) -> None:
    assert G.error_body(status, "Nope.", kind) == {"error": {"code": status, "message": "Nope.", "status": name}}


def test_error_body_is_what_the_sdk_raises_from() -> None:
    genai = pytest.importorskip("google.genai")
    raw = json.dumps(G.error_body(400, "Bad contents.", "invalid_request")).encode()
    client = sdk_client(raw, status=400)
    with pytest.raises(genai.errors.ClientError) as info:
        client.models.generate_content(model="m", contents="hi")
    assert (info.value.code, info.value.status, info.value.message) == (400, "INVALID_ARGUMENT", "Bad contents.")


def test_count_tokens_response() -> None:
    assert G.count_tokens_response(7) == {"totalTokens": 7}
