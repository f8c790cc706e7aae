"""The hub format and the helpers every dialect translator shares.

Place in the pipeline: every client request is turned into a hub request, every
upstream answer into a hub response or a stream of hub chunks, and back.  The hub is
the OpenAI Chat Completions shape (plain dicts) with these extensions, which the
translators carry across on purpose:

* assistant message / stream delta ``reasoning_content`` (str): the model's thinking;
* assistant message / stream delta ``reasoning_signature`` (str): the Anthropic
  thinking signature; it is only ever replayed to an Anthropic upstream;
* content parts may carry ``cache_control`` (kept only toward Anthropic);
* a tool call may carry ``extra_content: {"google": {"thought_signature": str}}``
  (the spelling Google's own OpenAI-compatible endpoint uses); it is only ever
  replayed to a Gemini upstream.

Hub usage is OpenAI usage: ``prompt_tokens`` includes cached and cache-write tokens,
``completion_tokens`` includes reasoning tokens, and the details objects carry
``cached_tokens``, ``cache_write_tokens`` and ``reasoning_tokens``.

Streams: translators only look at choice 0 of a hub chunk (the dialects that stream
through the hub cannot carry several choices in one stream).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

# A placeholder signature Gemini accepts in place of a lost thought signature
# (documented by Google for histories built outside Gemini).
GEMINI_DUMMY_SIGNATURE = "skip_thought_signature_validator"


class UpstreamStreamError(Exception):
    """The upstream reported an error inside a stream (or a failed response body)."""

    def __init__(self, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --------------------------------------------------------------------------- JSON / SSE


def dumps(obj: Any) -> str:
    """Compact JSON, UTF-8 characters kept as they are."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: optional ``event:`` line, one ``data: `` line, blank line."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {dumps(data)}\n\n".encode()


def parse_arguments(raw: Any, *, keep_raw: bool = False) -> dict[str, Any]:
    """Tool-call ``arguments`` (a JSON string) as an object.

    Empty arguments give ``{}``; anything that is not a JSON object gives ``{}`` or,
    with ``keep_raw``, ``{"arguments": raw}`` so nothing is silently lost.
    """
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    return {"arguments": raw} if keep_raw else {}


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<mime>;base64,<data>`` → ``(mime, data)``; ``None`` for anything else."""
    m = re.match(r"data:([^;,]*)((?:;[^;,]*)*),(.*)\Z", url, re.DOTALL)
    if not m or ";base64" not in m.group(2):
        return None
    return (m.group(1) or "application/octet-stream"), m.group(3)


def data_url(mime: str, data: str) -> str:
    return f"data:{mime};base64,{data}"


def safe_id(value: str, fallback: str) -> str:
    """An id matching ``^[a-zA-Z0-9_-]+$`` (deterministic, so results still match calls)."""
    cleaned = re.sub(r"[^a-zA-Z0-9_-]", "_", value or "")
    return cleaned or fallback


# --------------------------------------------------------------------------- content


def parts_of(content: Any) -> list[dict[str, Any]]:
    """Chat message content as a list of parts (a string becomes one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [p for p in content if isinstance(p, dict)]
    raise ValueError("Message content must be a string or a list of content parts.")


def text_of(content: Any) -> str:
    """All text of a content value (string or parts), concatenated."""
    if isinstance(content, str):
        return content
    out = []
    for part in parts_of(content):
        if part.get("type") in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            out.append(part["text"])
    return "".join(out)


def system_text(messages: list[dict[str, Any]]) -> str:
    return "\n\n".join(t for m in messages if m.get("role") in ("system", "developer") if (t := text_of(m.get("content"))))


def max_tokens_of(hub: dict[str, Any]) -> int | None:
    value = hub.get("max_completion_tokens")
    if value is None:
        value = hub.get("max_tokens")
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def stop_list(hub: dict[str, Any]) -> list[str]:
    stop = hub.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str) and s]
    return []


def check_messages(hub: dict[str, Any]) -> list[dict[str, Any]]:
    messages = hub.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise ValueError("The hub request must have a list of messages.")
    n = hub.get("n")
    if isinstance(n, int) and n > 1:
        raise ValueError("This upstream cannot return several choices (n > 1).")
    return messages


def function_tools(hub: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` bodies of the hub tools; other tool types are dropped."""
    out = []
    for tool in hub.get("tools") or []:
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type", "function") == "function" else None
        if isinstance(fn, dict) and fn.get("name"):
            out.append(fn)
    return out


def json_schema_of(response_format: Any) -> tuple[str, dict[str, Any] | None] | None:
    """Hub ``response_format`` → ``("json_object", None)`` / ``("json_schema", schema)`` / None."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json_object", None
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return "json_schema", schema if isinstance(schema, dict) else {"type": "object"}
    return None


# --------------------------------------------------------------------------- reasoning effort

# Thinking-budget sizes used when a hub ``reasoning_effort`` must become a token budget.
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32000,
}


def effort_for_budget(budget: int) -> str:
    """A token budget → the nearest widely supported effort (low / medium / high)."""
    if budget < 3072:
        return "low"
    if budget < 12288:
        return "medium"
    return "high"


# --------------------------------------------------------------------------- usage


def make_usage(
    prompt: int = 0,
    completion: int = 0,
    *,
    cached: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
    total: int | None = None,
) -> dict[str, Any]:
    """Hub (OpenAI) usage; ``prompt`` already includes cached and cache-write tokens."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion if total is None else total,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def empty_usage() -> dict[str, Any]:
    return make_usage()


def obj_at(obj: Any, key: str) -> dict[str, Any]:
    """``obj[key]`` when both are JSON objects, else an empty dict."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, dict) else {}


def int_of(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def usage_numbers(usage: Any) -> dict[str, int]:
    """Hub usage flattened: prompt, completion, total, cached, cache_write, reasoning."""
    usage = usage if isinstance(usage, dict) else {}
    pd = usage.get("prompt_tokens_details") or {}
    cd = usage.get("completion_tokens_details") or {}
    prompt = int_of(usage.get("prompt_tokens"))
    completion = int_of(usage.get("completion_tokens"))
    return {
        "prompt": prompt,
        "completion": completion,
        "total": int_of(usage.get("total_tokens")) or prompt + completion,
        "cached": int_of(pd.get("cached_tokens")),
        "cache_write": int_of(pd.get("cache_write_tokens")),
        "reasoning": int_of(cd.get("reasoning_tokens")),
    }


# --------------------------------------------------------------------------- hub builders


def hub_chunk(
    response_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
    }


def hub_usage_chunk(response_id: str, created: int, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def hub_response(
    response_id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    usage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def hub_tool_call(call_id: str, name: str, arguments: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    if extra:
        call["extra_content"] = extra
    return call


def gemini_signature_of(tool_call: dict[str, Any]) -> str | None:
    extra = tool_call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) and sig else None


def first_choice_message(resp: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(message, finish_reason) of choice 0 of a hub response (empty message if none)."""
    choices = resp.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return {"role": "assistant", "content": None}, None
    choice = choices[0]
    return (choice.get("message") or {}), choice.get("finish_reason")


# --------------------------------------------------------------------------- reading hub chunks


@dataclass
class HubDelta:
    """One meaningful piece of a hub stream chunk, in the order it should be emitted."""

    kind: Literal["reasoning", "signature", "text", "refusal", "tool", "finish", "usage"]
    text: str = ""
    index: int = 0
    call_id: str | None = None
    name: str | None = None
    extra: dict[str, Any] | None = None
    usage: dict[str, Any] = field(default_factory=dict)


def read_chunk(chunk: dict[str, Any]) -> list[HubDelta]:
    """Split a hub chunk into deltas: reasoning, signature, text, refusal, tools, finish, usage."""
    out: list[HubDelta] = []
    choices = chunk.get("choices") or []
    choice = choices[0] if choices and isinstance(choices[0], dict) else None
    if choice is not None:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("reasoning_content"), str) and delta["reasoning_content"]:
            out.append(HubDelta("reasoning", delta["reasoning_content"]))
        if isinstance(delta.get("reasoning_signature"), str) and delta["reasoning_signature"]:
            out.append(HubDelta("signature", delta["reasoning_signature"]))
        if isinstance(delta.get("content"), str) and delta["content"]:
            out.append(HubDelta("text", delta["content"]))
        if isinstance(delta.get("refusal"), str) and delta["refusal"]:
            out.append(HubDelta("refusal", delta["refusal"]))
        for pos, call in enumerate(delta.get("tool_calls") or []):
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            out.append(
                HubDelta(
                    "tool",
                    fn.get("arguments") or "",
                    index=call["index"] if isinstance(call.get("index"), int) else pos,
                    call_id=call.get("id") or None,
                    name=fn.get("name") or None,
                    extra=call.get("extra_content") if isinstance(call.get("extra_content"), dict) else None,
                )
            )
        if choice.get("finish_reason"):
            out.append(HubDelta("finish", str(choice["finish_reason"])))
    if isinstance(chunk.get("usage"), dict):
        out.append(HubDelta("usage", usage=chunk["usage"]))
    return out


# --------------------------------------------------------------------------- finish reasons

ANTHROPIC_STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

FINISH_TO_ANTHROPIC_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

GEMINI_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)

FINISH_TO_GEMINI: dict[str, str] = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}


def finish_from_anthropic(stop_reason: str | None, has_tool_calls: bool) -> str:
    if not stop_reason:
        return "tool_calls" if has_tool_calls else "stop"
    return ANTHROPIC_STOP_TO_FINISH.get(stop_reason, "stop")


def finish_to_anthropic(finish_reason: str | None, has_tool_calls: bool) -> str:
    if not finish_reason:
        return "tool_use" if has_tool_calls else "end_turn"
    return FINISH_TO_ANTHROPIC_STOP.get(finish_reason, "end_turn")


def finish_from_gemini(reason: str | None, has_function_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in GEMINI_FILTER_REASONS:
        return "content_filter"
    return "tool_calls" if has_function_calls else "stop"


def finish_to_gemini(finish_reason: str | None) -> str:
    return FINISH_TO_GEMINI.get(finish_reason or "stop", "STOP")
