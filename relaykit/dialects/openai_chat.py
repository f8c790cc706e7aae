"""OpenAI Chat Completions: the relay's first dialect and the hub's own shape.

Ingress: validate just enough of the client's body to route it (model, messages, stream,
token limits) and leave the rest untouched for passthrough.  Egress: the same shape, so
the hub translations are identities; what this module adds is usage extraction, the
removal of the usage chunk a client did not ask for, and OpenAI-shaped errors.
"""

from __future__ import annotations

from typing import Any

import orjson

from .hub import UpstreamStreamError
from .sse import DONE, encode_data

NAME = "openai_chat"

_ERROR_TYPES = {
    400: "invalid_request_error", 401: "invalid_request_error", 402: "insufficient_quota",
    403: "permission_error", 404: "invalid_request_error", 413: "invalid_request_error",
    429: "rate_limit_error", 502: "upstream_error", 503: "server_error", 504: "upstream_error",
}


def error_body(status: int, message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    etype = "insufficient_quota" if kind == "insufficient_quota" else _ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def stream_error(message: str, kind: str, code: str | None = None) -> bytes:
    """Mid-stream failure: the openai SDK raises APIError on a data object with "error"."""
    return encode_data({"error": {"message": message, "type": kind, "code": code}})


def validate_request(body: Any) -> str | None:
    """Return one sentence describing what is wrong with a chat request, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "The 'model' field is required and must be a string."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The 'messages' field is required and must be a non-empty array."
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            return f"messages[{i}] must be an object with a 'role'."
    if "stream" in body and not isinstance(body["stream"], bool):
        return "The 'stream' field must be true or false."
    for key in ("max_tokens", "max_completion_tokens"):
        v = body.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            return f"The '{key}' field must be a positive integer."
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128):
        return "The 'n' field must be an integer between 1 and 128."
    so = body.get("stream_options")
    if so is not None and not isinstance(so, dict):
        return "The 'stream_options' field must be an object."
    return None


def max_output_tokens(body: dict[str, Any]) -> int | None:
    v = body.get("max_completion_tokens") or body.get("max_tokens")
    return v if isinstance(v, int) else None


def wants_usage(body: dict[str, Any]) -> bool:
    so = body.get("stream_options")
    return isinstance(so, dict) and so.get("include_usage") is True


def prompt_text(body: dict[str, Any]) -> tuple[str, int]:
    """All text a chat request sends, and its number of images (for the hold estimate)."""
    parts: list[str] = []
    images = 0
    for m in body.get("messages") or ():
        if not isinstance(m, dict):
            continue
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            for p in c:
                if isinstance(p, dict):
                    if isinstance(p.get("text"), str):
                        parts.append(p["text"])
                    elif p.get("type") in ("image_url", "input_audio", "file"):
                        images += 1
        for call in m.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                parts.append(str(call["function"].get("arguments", "")))
    for tool in body.get("tools") or ():
        parts.append(orjson.dumps(tool).decode())
    return "\n".join(parts), images


def usage_from_body(usage: Any) -> dict[str, Any] | None:
    """Normalise an OpenAI-compatible usage object to hub usage (None when absent)."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    pdet = usage.get("prompt_tokens_details") or {}
    cached = int(pdet.get("cached_tokens") or 0) if isinstance(pdet, dict) else 0
    if not cached and usage.get("prompt_cache_hit_tokens"):  # DeepSeek's spelling
        cached = int(usage["prompt_cache_hit_tokens"])
    cache_write = int(pdet.get("cache_write_tokens") or 0) if isinstance(pdet, dict) else 0
    cdet = usage.get("completion_tokens_details") or {}
    reasoning = int(cdet.get("reasoning_tokens") or 0) if isinstance(cdet, dict) else 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": cache_write},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}


def delta_text(chunk: dict[str, Any]) -> str:
    """Text a chunk delivers (content, reasoning, tool arguments), for estimation."""
    out: list[str] = []
    for ch in chunk.get("choices") or ():
        if not isinstance(ch, dict):
            continue
        d = ch.get("delta") or ch.get("message") or {}
        if not isinstance(d, dict):
            continue
        for key in ("content", "reasoning_content", "reasoning", "refusal"):
            v = d.get(key)
            if isinstance(v, str):
                out.append(v)
        for call in d.get("tool_calls") or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                args = call["function"].get("arguments")
                if isinstance(args, str):
                    out.append(args)
                name = call["function"].get("name")
                if isinstance(name, str):
                    out.append(name)
    return "".join(out)


# --------------------------------------------------------------------------- hub identities

def request_to_hub(body: dict[str, Any], *, model: str) -> dict[str, Any]:
    out = dict(body)
    out["model"] = model
    return out


def _without(obj: Any, key: str) -> Any:
    return {k: v for k, v in obj.items() if k != key} if isinstance(obj, dict) and key in obj else obj


def request_from_hub(hub: dict[str, Any], *, model: str) -> dict[str, Any]:
    """Hub → an OpenAI-compatible upstream, without the hub-only extensions it would not
    expect (and OpenAI rejects): Anthropic ``reasoning_signature`` and ``cache_control``
    (OpenAI caches prompts by itself), Gemini ``extra_content`` thought signatures."""
    out = dict(hub)
    out["model"] = model
    msgs = []
    for m in out.get("messages") or ():
        m = _without(m, "reasoning_signature")
        if isinstance(m, dict):
            if isinstance(m.get("content"), list):
                m = {**m, "content": [_without(p, "cache_control") for p in m["content"]]}
            if isinstance(m.get("tool_calls"), list):
                m = {**m, "tool_calls": [_without(c, "extra_content") for c in m["tool_calls"]]}
        msgs.append(m)
    out["messages"] = msgs
    if isinstance(out.get("tools"), list):
        out["tools"] = [_without(t, "cache_control") for t in out["tools"]]
    return out


def response_to_hub(body: dict[str, Any], *, model: str, response_id: str, created: int) -> dict[str, Any]:
    return body


def response_from_hub(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    return resp


class StreamToHub:
    """Upstream OpenAI chat SSE -> hub chunks (they are the same; errors raise)."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self.model = model

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        if not data or data == "[DONE]":
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamStreamError("The upstream sent a stream event that is not valid JSON.") from None
        if not isinstance(chunk, dict):
            return []
        if chunk.get("error"):
            err = chunk["error"]
            msg = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamStreamError(f"The upstream reported an error mid-stream: {msg}")
        return [chunk]

    def finish(self) -> list[dict[str, Any]]:
        return []


class StreamFromHub:
    """Hub chunks -> OpenAI chat SSE for the client, dropping the usage chunk unless asked."""

    def __init__(self, *, model: str, response_id: str, created: int, include_usage: bool = True) -> None:
        self.include_usage = include_usage

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if not self.include_usage and not chunk.get("choices") and chunk.get("usage"):
            return b""
        return encode_data(chunk)

    def close(self) -> bytes:
        return DONE

    def error(self, message: str, status: int, *, passthrough: bool = False) -> bytes:
        # stateless, so equally valid after the upstream's own events (passthrough)
        return stream_error(message, "upstream_error")
