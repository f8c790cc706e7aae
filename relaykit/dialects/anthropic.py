"""Anthropic Messages ⇄ hub translation (requests, responses, usage, errors).

Place in the pipeline:

* ingress — a client speaking Anthropic Messages (``POST /v1/messages``):
  ``request_to_hub`` → relay → ``response_from_hub`` / ``StreamFromHub``;
* egress — an Anthropic upstream: ``request_from_hub`` → upstream →
  ``response_to_hub`` / ``StreamToHub``; ``usage_from_body`` normalises its usage
  (``input_tokens`` excludes cache reads/writes, the hub's ``prompt_tokens`` does not).

Request conversions live in ``anthropic_request``, streams, usage and errors in
``anthropic_stream``; every public name is importable from this module.

Dropped on purpose (cannot be carried across):

* from Anthropic clients: ``top_k``; ``service_tier``, ``container``, ``mcp_servers``
  and top-level ``cache_control``; server tools (``web_search_…``, ``bash_…``,
  ``text_editor_…``) and ``cache_control`` on tool definitions (``cache_control`` on
  system, text, image and tool-result blocks is kept); ``redacted_thinking``,
  ``search_result`` and server-tool blocks in history; the signature when one
  assistant turn holds several thinking blocks (their texts are joined, so no single
  signature matches them); the thinking budget itself (it becomes a
  ``reasoning_effort`` bucket); a final assistant message is kept as history, but
  non-Anthropic upstreams do not continue it as a prefill;
* toward Anthropic upstreams: thinking without a signature (Anthropic rejects it);
  ``response_format`` ``json_object`` (Anthropic has no plain JSON mode; json_schema
  is carried as ``output_config.format``); ``seed``, penalties, ``logit_bias``,
  ``logprobs``, ``metadata``, ``store``; non-function tools; audio input; tool-call
  ``extra_content`` (Gemini signatures).  Thinking is switched off when the last
  assistant tool-use turn has no signed thinking or when tool use is forced, because
  Anthropic rejects both combinations;  ``temperature``/``top_p`` are dropped while
  thinking is on and ``temperature`` is clamped to 0..1 otherwise;
* from Anthropic responses: ``stop_sequence`` (folded into ``stop``), citations,
  ``redacted_thinking`` and server-tool blocks.
"""

from __future__ import annotations

from typing import Any

from relaykit.dialects.anthropic_request import request_from_hub, request_to_hub
from relaykit.dialects.anthropic_stream import (
    StreamFromHub,
    StreamToHub,
    error_body,
    usage_from_body,
    usage_to_anthropic,
)
from relaykit.dialects.hub import (
    UpstreamStreamError,
    dumps,
    finish_from_anthropic,
    finish_to_anthropic,
    first_choice_message,
    hub_response,
    hub_tool_call,
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
    "usage_from_body",
]


def count_tokens_response(n: int) -> dict[str, Any]:
    return {"input_tokens": n}


# =========================================================================== ingress


def response_from_hub(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A hub chat response → an Anthropic Messages response body."""
    msg, finish = first_choice_message(resp)
    content: list[dict[str, Any]] = []
    if msg.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": str(msg["reasoning_content"]),
                        "signature": str(msg.get("reasoning_signature") or "")})
    text = text_of(msg.get("content")) or str(msg.get("refusal") or "")
    if text:
        content.append({"type": "text", "text": text})
    calls = [c for c in msg.get("tool_calls") or [] if isinstance(c, dict)]
    for i, call in enumerate(calls):
        fn = call.get("function") or {}
        content.append({
            "type": "tool_use",
            "id": safe_id(str(call.get("id") or ""), f"toolu_{safe_id(str(resp.get('id') or ''), 'x')}_{i}"),
            "name": str(fn.get("name") or ""),
            "input": parse_arguments(fn.get("arguments")),
        })
    return {
        "id": resp.get("id") or "msg_relay",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish_to_anthropic(finish, bool(calls)),
        "stop_sequence": None,
        "usage": usage_to_anthropic(resp.get("usage")),
    }


# =========================================================================== egress


def response_to_hub(body: dict[str, Any], *, model: str, response_id: str, created: int) -> dict[str, Any]:
    """An Anthropic Messages response → a hub chat response."""
    if body.get("type") == "error":
        err = body.get("error") or {}
        raise UpstreamStreamError(str(err.get("message") or "The Anthropic upstream reported an error."))
    texts: list[str] = []
    thinking: list[tuple[str, str]] = []
    calls: list[dict[str, Any]] = []
    for block in body.get("content") or []:
        btype = block.get("type") if isinstance(block, dict) else None
        if btype == "text":
            texts.append(str(block.get("text") or ""))
        elif btype == "thinking":
            thinking.append((str(block.get("thinking") or ""), str(block.get("signature") or "")))
        elif btype == "tool_use":
            args = block.get("input") if isinstance(block.get("input"), dict) else {}
            calls.append(hub_tool_call(str(block.get("id") or f"call_{len(calls)}"), str(block.get("name") or ""), dumps(args)))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(t for t, _ in thinking)
        if len(thinking) == 1 and thinking[0][1]:
            message["reasoning_signature"] = thinking[0][1]
    choice = {"index": 0, "message": message, "finish_reason": finish_from_anthropic(body.get("stop_reason"), bool(calls)),
              "logprobs": None}
    return hub_response(response_id, created, model, [choice], usage_from_body(body))
