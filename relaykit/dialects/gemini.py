"""Gemini ``generateContent`` ⇄ hub translation (requests, responses, usage, errors).

Place in the pipeline:

* ingress — a client speaking Gemini (``/v1beta|v1/models/{m}:generateContent`` and
  ``:streamGenerateContent?alt=sse``): ``request_to_hub`` → relay →
  ``response_from_hub`` / ``StreamFromHub``; the model comes from the URL and the
  caller decides ``stream``;
* egress — a Gemini upstream: ``request_from_hub`` (model goes in the URL, see
  ``upstream_path``) → upstream → ``response_to_hub`` / ``StreamToHub``.

Both lowerCamelCase and snake_case field names are accepted on input (proto3 JSON).

Request conversions live in ``gemini_request``, streams, usage and errors in
``gemini_stream``; every public name is importable from this module.

Dropped on purpose (cannot be carried across):

* from Gemini clients: ``safetySettings``, ``cachedContent``, ``topK``,
  ``responseModalities``, ``speechConfig``, ``imageConfig``, ``mediaResolution``,
  ``includeThoughts``, ``responseLogprobs``; non-function tools (``googleSearch``,
  ``codeExecution``, ``urlContext``); thought parts and ``thoughtSignature`` on text
  parts in history (a ``thoughtSignature`` on a ``functionCall`` part is kept in the
  hub tool call and replayed only to a Gemini upstream); ``fileData`` other than
  images, and model-turn inline data;
* toward Gemini upstreams: ``reasoning_content`` in history (Gemini takes thoughts
  back only as signatures) and Anthropic thinking signatures; ``cache_control``;
  ``logit_bias``, ``logprobs``, ``user``, ``metadata``, ``store``; tool-call ids
  (results are matched by name and order); stop sequences beyond the fifth;
  JSON-Schema keywords Gemini's ``parameters`` subset rejects (schemas that need
  ``$ref`` go as ``parametersJsonSchema`` instead).  A tool call without a stored
  thought signature gets Google's documented placeholder on Gemini 3+ models.
  http(s) image URLs are sent as ``fileData.fileUri``: the caller should download and
  inline them if the upstream cannot fetch them;
* from Gemini responses: inline images are turned into markdown ``![image](data:...)``
  text; code-execution parts, safety ratings and grounding metadata are dropped.
"""

from __future__ import annotations

from typing import Any

from relaykit.dialects.gemini_request import request_from_hub, request_to_hub
from relaykit.dialects.gemini_stream import (
    StreamFromHub,
    StreamToHub,
    error_body,
    g,
    usage_from_body,
    usage_to_gemini,
)
from relaykit.dialects.hub import (
    UpstreamStreamError,
    data_url,
    dumps,
    finish_from_gemini,
    finish_to_gemini,
    gemini_signature_of,
    hub_response,
    hub_tool_call,
    obj_at,
    parse_arguments,
    safe_id,
    text_of,
)

__all__ = [
    "StreamFromHub",
    "StreamToHub",
    "count_tokens_response",
    "error_body",
    "request_from_hub",
    "request_to_hub",
    "response_from_hub",
    "response_to_hub",
    "upstream_path",
    "usage_from_body",
]


def count_tokens_response(n: int) -> dict[str, Any]:
    return {"totalTokens": n}


def upstream_path(model: str, stream: bool) -> str:
    name = model.removeprefix("models/")
    if stream:
        return f"/v1beta/models/{name}:streamGenerateContent?alt=sse"
    return f"/v1beta/models/{name}:generateContent"


# =========================================================================== ingress


def response_from_hub(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A hub chat response → a Gemini GenerateContentResponse body."""
    candidates = []
    for pos, choice in enumerate(resp.get("choices") or []):
        msg = choice.get("message") or {}
        parts: list[dict[str, Any]] = []
        if msg.get("reasoning_content"):
            parts.append({"text": str(msg["reasoning_content"]), "thought": True})
        text = text_of(msg.get("content")) or str(msg.get("refusal") or "")
        if text:
            parts.append({"text": text})
        for i, call in enumerate(msg.get("tool_calls") or []):
            fn = call.get("function") or {}
            call_id = str(call.get("id") or f"call_{safe_id(str(resp.get('id') or ''), 'x')}_{i}")
            part: dict[str, Any] = {"functionCall": {"name": str(fn.get("name") or ""),
                                                     "args": parse_arguments(fn.get("arguments"), keep_raw=True),
                                                     "id": call_id}}
            if sig := gemini_signature_of(call):
                part["thoughtSignature"] = sig
            parts.append(part)
        finish = choice.get("finish_reason")
        candidate: dict[str, Any] = {"index": choice.get("index", pos), "finishReason": finish_to_gemini(finish)}
        if parts or finish != "content_filter":
            candidate["content"] = {"role": "model", "parts": parts or [{"text": ""}]}
        candidates.append(candidate)
    return {
        "candidates": candidates,
        "usageMetadata": usage_to_gemini(resp.get("usage")),
        "modelVersion": model,
        "responseId": resp.get("id") or "",
    }


# =========================================================================== egress


def response_to_hub(body: dict[str, Any], *, model: str, response_id: str, created: int) -> dict[str, Any]:
    """A Gemini GenerateContentResponse → a hub chat response."""
    if isinstance(body.get("error"), dict):
        raise UpstreamStreamError(str(body["error"].get("message") or "The Gemini upstream reported an error."))
    choices = []
    n_calls = 0
    for pos, cand in enumerate(body.get("candidates") or []):
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in obj_at(cand, "content").get("parts") or []:
            fc = g(part, "functionCall")
            inline = g(part, "inlineData")
            if isinstance(fc, dict):
                sig = g(part, "thoughtSignature")
                call_id = str(fc.get("id") or f"call_{safe_id(response_id, 'x')}_{n_calls}")
                n_calls += 1
                calls.append(hub_tool_call(call_id, str(fc.get("name") or ""), dumps(fc.get("args") or {}),
                                           {"google": {"thought_signature": sig}} if sig else None))
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else texts).append(part["text"])
            elif isinstance(inline, dict) and str(g(inline, "mimeType") or "").startswith("image/"):
                texts.append(f"![image]({data_url(str(g(inline, 'mimeType')), str(inline.get('data') or ''))})")
        message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        finish = finish_from_gemini(g(cand, "finishReason"), bool(calls))
        choices.append({"index": cand.get("index", pos), "message": message, "finish_reason": finish, "logprobs": None})
    if not choices:  # the prompt itself was blocked
        choices.append({"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "content_filter",
                        "logprobs": None})
    return hub_response(response_id, created, model, choices, usage_from_body(body))
