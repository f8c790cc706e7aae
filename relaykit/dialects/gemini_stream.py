"""Gemini ``streamGenerateContent?alt=sse`` streams ⇄ hub chunks, plus Gemini usage and
error shapes.

Place in the pipeline: ``StreamFromHub`` turns hub chunks into the ``data: {...}``
events a Gemini client (google-genai) expects — exactly ``data: `` with a space, no
``event:`` lines, no ``[DONE]``; ``StreamToHub`` turns a Gemini upstream's SSE chunks
into hub chunks.  The public names are re-exported by ``relaykit.dialects.gemini``.

Dropped on purpose:

* toward the client, tool-call argument fragments are held until the call is complete
  (at the hub finish), because Gemini sends each ``functionCall`` whole; text and
  thoughts are still sent as they arrive;
* Anthropic thinking signatures (``reasoning_signature``) never reach a Gemini client;
* from a Gemini upstream, ``thoughtSignature`` on text/thought parts, inline images,
  ``executableCode``/``codeExecutionResult`` parts, safety ratings and citation
  metadata have no hub equivalent; ``thoughtSignature`` on ``functionCall`` parts is
  kept as the tool call's ``extra_content.google.thought_signature``.
"""

from __future__ import annotations

import json
from typing import Any

from relaykit.dialects.hub import (
    HubDelta,
    UpstreamStreamError,
    dumps,
    finish_from_gemini,
    finish_to_gemini,
    hub_chunk,
    hub_usage_chunk,
    int_of,
    make_usage,
    obj_at,
    parse_arguments,
    read_chunk,
    safe_id,
    usage_numbers,
)

# --------------------------------------------------------------------------- helpers


def g(obj: Any, camel: str) -> Any:
    """Read a proto3-JSON field by its lowerCamelCase or snake_case name."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return obj.get(snake)


def usage_from_body(body: dict[str, Any]) -> dict[str, Any]:
    """Hub usage from a Gemini ``usageMetadata`` (or a response that has one).

    Thought tokens sit outside ``candidatesTokenCount`` at Gemini; in the hub they are
    part of ``completion_tokens`` and reported as ``reasoning_tokens``.
    """
    usage = g(body, "usageMetadata")
    usage = usage if isinstance(usage, dict) else body
    prompt = int_of(g(usage, "promptTokenCount")) + int_of(g(usage, "toolUsePromptTokenCount"))
    thoughts = int_of(g(usage, "thoughtsTokenCount"))
    completion = int_of(g(usage, "candidatesTokenCount")) + thoughts
    return make_usage(
        prompt,
        completion,
        cached=int_of(g(usage, "cachedContentTokenCount")),
        reasoning=thoughts,
        total=int_of(g(usage, "totalTokenCount")) or prompt + completion,
    )


def usage_to_gemini(usage: Any) -> dict[str, int]:
    n = usage_numbers(usage)
    out = {
        "promptTokenCount": n["prompt"],
        "candidatesTokenCount": max(n["completion"] - n["reasoning"], 0),
        "totalTokenCount": n["total"],
    }
    if n["reasoning"]:
        out["thoughtsTokenCount"] = n["reasoning"]
    if n["cached"]:
        out["cachedContentTokenCount"] = n["cached"]
    return out


_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_KIND_NAMES: dict[str, str] = {
    "insufficient_quota": "RESOURCE_EXHAUSTED",
    "rate_limit": "RESOURCE_EXHAUSTED",
    "timeout": "DEADLINE_EXCEEDED",
}


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """Gemini (google.rpc.Status) error envelope; ``code`` is the HTTP status."""
    name = _KIND_NAMES.get(kind) or _STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": name}}


def _frame(obj: dict[str, Any]) -> bytes:
    return f"data: {dumps(obj)}\n\n".encode()


# --------------------------------------------------------------------------- hub → client


class StreamFromHub:
    """Hub chunks → Gemini SSE bytes (one ``data: `` event per text/thought delta)."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self._model = model
        self._id = response_id
        self._tools: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._done = False

    def _event(self, parts: list[dict[str, Any]] | None, finish: str | None = None,
               usage: dict[str, Any] | None = None) -> bytes:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts or [{"text": ""}]}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        obj: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            obj["usageMetadata"] = usage_to_gemini(usage)
        obj["modelVersion"] = self._model
        obj["responseId"] = self._id
        return _frame(obj)

    def _flush_tools(self) -> bytes:
        if not self._tools:
            return b""
        parts = []
        for index in sorted(self._tools):
            call = self._tools[index]
            fc = {"name": call["name"], "args": parse_arguments(call["arguments"], keep_raw=True), "id": call["id"]}
            part: dict[str, Any] = {"functionCall": fc}
            if call["signature"]:
                part["thoughtSignature"] = call["signature"]
            parts.append(part)
        self._tools = {}
        return self._event(parts)

    def _final(self) -> bytes:
        if self._done:
            return b""
        self._done = True
        return self._event(None, finish_to_gemini(self._finish), self._usage)

    def _one(self, d: HubDelta) -> bytes:
        if d.kind == "reasoning":
            return self._event([{"text": d.text, "thought": True}])
        if d.kind in ("text", "refusal"):
            return self._event([{"text": d.text}])
        if d.kind == "tool":
            call = self._tools.get(d.index)
            if call is None:
                fallback = f"call_{safe_id(self._id, 'x')}_{d.index}"
                call = self._tools[d.index] = {"id": d.call_id or fallback, "name": d.name or "", "arguments": "", "signature": None}
            call["arguments"] += d.text
            google = (d.extra or {}).get("google")
            if isinstance(google, dict) and google.get("thought_signature"):
                call["signature"] = google["thought_signature"]
            return b""
        if d.kind == "finish":
            self._finish = d.text
            return self._flush_tools() + (self._final() if self._usage is not None else b"")
        if d.kind == "usage":
            self._usage = d.usage
            return self._final() if self._finish is not None else b""
        return b""  # Anthropic signatures stay out of Gemini

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self._done:
            return b""
        return b"".join(self._one(d) for d in read_chunk(chunk))

    def close(self) -> bytes:
        if self._done:
            return b""
        return self._flush_tools() + self._final()

    def error(self, message: str, status: int, *, passthrough: bool = False) -> bytes:
        # stateless, so equally valid after the upstream's own events (passthrough)
        self._done = True  # the client raises on this chunk; nothing may follow it
        return _frame(error_body(status, message, "upstream"))


# --------------------------------------------------------------------------- upstream → hub


class StreamToHub:
    """Gemini upstream SSE chunks → hub chunks (each ``functionCall`` becomes one whole
    tool-call delta with a new index)."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self._model = model
        self._id = response_id
        self._created = created
        self._started = False
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._calls_total = 0
        self._usage: dict[str, Any] | None = None
        self._usage_sent = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
        return hub_chunk(self._id, self._created, self._model, delta, finish, index)

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        if not data.strip() or data.strip() == "[DONE]":
            return []
        try:
            obj = json.loads(data)
        except ValueError:
            raise UpstreamStreamError("The Gemini upstream sent an event that is not JSON.") from None
        if not isinstance(obj, dict):
            return []
        if isinstance(obj.get("error"), dict):
            err = obj["error"]
            status = int_of(err.get("code")) or 502
            raise UpstreamStreamError(str(err.get("message") or "The Gemini upstream reported an error."), status=status)
        out: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if isinstance(g(obj, "usageMetadata"), dict):
            self._usage = g(obj, "usageMetadata")
        candidates = obj.get("candidates") or []
        feedback = g(obj, "promptFeedback")
        if not candidates and isinstance(feedback, dict) and g(feedback, "blockReason"):
            out.append(self._chunk({}, "content_filter"))
        for pos, cand in enumerate(candidates):
            if isinstance(cand, dict):
                out.extend(self._candidate(cand, int_of(cand.get("index")) if "index" in cand else pos))
        return out

    def _candidate(self, cand: dict[str, Any], index: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in obj_at(cand, "content").get("parts") or []:
            if not isinstance(part, dict):
                continue
            fc = g(part, "functionCall")
            if isinstance(fc, dict):
                k = self._tools.get(index, 0)
                self._tools[index] = k + 1
                self._calls_total += 1
                call: dict[str, Any] = {
                    "index": k,
                    "id": fc.get("id") or f"call_{safe_id(self._id, 'x')}_{self._calls_total - 1}",
                    "type": "function",
                    "function": {"name": str(fc.get("name") or ""), "arguments": dumps(fc.get("args") or {})},
                }
                sig = g(part, "thoughtSignature")
                if sig:
                    call["extra_content"] = {"google": {"thought_signature": sig}}
                out.append(self._chunk({"tool_calls": [call]}, index=index))
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning_content" if part.get("thought") else "content"
                out.append(self._chunk({key: part["text"]}, index=index))
        reason = g(cand, "finishReason")
        if reason:
            out.append(self._chunk({}, finish_from_gemini(reason, index in self._tools), index))
        return out

    def finish(self) -> list[dict[str, Any]]:
        if self._usage_sent or self._usage is None:
            return []
        self._usage_sent = True
        return [hub_usage_chunk(self._id, self._created, self._model, usage_from_body({"usageMetadata": self._usage}))]
