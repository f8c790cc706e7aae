"""Anthropic Messages streams ⇄ hub chunks, plus Anthropic usage and error shapes.

Place in the pipeline: ``StreamFromHub`` turns the hub chunks of any upstream into the
SSE events an Anthropic client (SDK, Claude Code) expects; ``StreamToHub`` turns the SSE
events of an Anthropic upstream into hub chunks.  Both work event by event: nothing
that can be sent is held back.  The public names are re-exported by
``relaykit.dialects.anthropic``.

Dropped on purpose:

* ``citations_delta``, ``redacted_thinking`` blocks and server-tool blocks
  (``server_tool_use``, ``*_tool_result``) from an Anthropic upstream: the hub has no
  place for them;
* ``stop_sequence`` (which stop string matched) is not known from a hub stream, so
  the client sees ``end_turn`` and ``stop_sequence: null``;
* toward the client, ``message_start`` carries zero usage (a hub stream only knows
  usage at its end); the real input, cache and output counts arrive in the final
  ``message_delta``, whose values the SDK uses to overwrite the start values;
* a hub stream only carries choice 0.
"""

from __future__ import annotations

import json
from typing import Any

from relaykit.dialects.hub import (
    HubDelta,
    UpstreamStreamError,
    dumps,
    finish_from_anthropic,
    finish_to_anthropic,
    hub_chunk,
    hub_usage_chunk,
    int_of,
    make_usage,
    obj_at,
    read_chunk,
    safe_id,
    sse,
    usage_numbers,
)

# --------------------------------------------------------------------------- usage / errors


def usage_from_body(body: dict[str, Any]) -> dict[str, Any]:
    """Hub usage from an Anthropic ``usage`` object (or a whole message that has one).

    Anthropic ``input_tokens`` excludes cache reads and cache writes; the hub's
    ``prompt_tokens`` includes both.
    """
    usage = obj_at(body, "usage") or body
    cache_read = int_of(usage.get("cache_read_input_tokens"))
    cache_write = int_of(usage.get("cache_creation_input_tokens"))
    output = int_of(usage.get("output_tokens"))
    details = usage.get("output_tokens_details") or {}
    return make_usage(
        int_of(usage.get("input_tokens")) + cache_read + cache_write,
        output,
        cached=cache_read,
        cache_write=cache_write,
        reasoning=int_of(details.get("thinking_tokens")) if isinstance(details, dict) else 0,
    )


def usage_to_anthropic(usage: Any) -> dict[str, int]:
    """Hub usage → Anthropic usage (``input_tokens`` without cache reads/writes)."""
    n = usage_numbers(usage)
    return {
        "input_tokens": max(n["prompt"] - n["cached"] - n["cache_write"], 0),
        "output_tokens": n["completion"],
        "cache_creation_input_tokens": n["cache_write"],
        "cache_read_input_tokens": n["cached"],
    }


_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_STATUS_OF_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 502,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """Anthropic error envelope; the error type follows the HTTP status (``kind`` only
    breaks ties for statuses Anthropic has no type for)."""
    etype = _ERROR_TYPES.get(status)
    if etype is None:
        if kind == "timeout":
            etype = "timeout_error"
        elif status >= 500:
            etype = "api_error"
        else:
            etype = "invalid_request_error"
    return {"type": "error", "error": {"type": etype, "message": message}}


# --------------------------------------------------------------------------- hub → client


class StreamFromHub:
    """Hub chunks → Anthropic SSE bytes (``event:`` + ``data:`` lines, contiguous indices)."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self._model = model
        self._id = response_id
        self._created = created
        self._started = False
        self._closed = False
        self._next_index = 0
        self._open: str | None = None  # "text" | "thinking" | "tool"
        self._open_tool: int | None = None  # hub tool index of the open tool block
        self._signed = False  # the open thinking block already got its signature
        self._tool_blocks: dict[int, int] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    # -- framing helpers
    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse({"type": "message_start", "message": message}, "message_start")

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        index = self._next_index - 1
        self._open = None
        self._open_tool = None
        return sse({"type": "content_block_stop", "index": index}, "content_block_stop")

    def _open_block(self, block: dict[str, Any], kind: str) -> bytes:
        out = self._close_block()
        self._open = kind
        self._signed = False
        index = self._next_index
        self._next_index += 1
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return out + sse(start, "content_block_start")

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return sse({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")

    # -- per hub delta
    def _one(self, d: HubDelta) -> bytes:
        out = b""
        if d.kind == "reasoning":
            if self._open != "thinking" or self._signed:
                out += self._open_block({"type": "thinking", "thinking": "", "signature": ""}, "thinking")
            return out + self._delta(self._next_index - 1, {"type": "thinking_delta", "thinking": d.text})
        if d.kind == "signature":
            if self._open != "thinking":
                return b""  # a signature without its thinking text cannot be replayed
            self._signed = True
            return self._delta(self._next_index - 1, {"type": "signature_delta", "signature": d.text})
        if d.kind in ("text", "refusal"):
            if self._open != "text":
                out += self._open_block({"type": "text", "text": ""}, "text")
            return out + self._delta(self._next_index - 1, {"type": "text_delta", "text": d.text})
        if d.kind == "tool":
            block = self._tool_blocks.get(d.index)
            if block is None:
                call_id = safe_id(d.call_id or "", f"toolu_{safe_id(self._id, 'x')}_{d.index}")
                tool = {"type": "tool_use", "id": call_id, "name": d.name or "", "input": {}}
                out += self._open_block(tool, "tool")
                block = self._next_index - 1
                self._tool_blocks[d.index] = block
                self._open_tool = d.index
            # Fragments of an earlier call (upstreams that interleave parallel calls) go
            # to that call's index; the SDK accumulator accepts them there.
            if d.text:
                out += self._delta(block, {"type": "input_json_delta", "partial_json": d.text})
            return out
        if d.kind == "finish":
            self._finish = d.text
            return self._close_block()
        if d.kind == "usage":
            self._usage = d.usage
        return out

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self._closed:
            return b""
        out = [self._start()]
        out.extend(self._one(d) for d in read_chunk(chunk))
        return b"".join(out)

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = self._start() + self._close_block()
        usage = usage_to_anthropic(self._usage)
        stop = finish_to_anthropic(self._finish, bool(self._tool_blocks))
        delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": usage}
        return out + sse(delta, "message_delta") + sse({"type": "message_stop"}, "message_stop")

    def error(self, message: str, status: int, *, passthrough: bool = False) -> bytes:
        # stateless, so equally valid after the upstream's own events (passthrough)
        return sse(error_body(status, message, "upstream"), "error")


# --------------------------------------------------------------------------- upstream → hub


class StreamToHub:
    """Anthropic upstream SSE events → hub chunks (tool calls indexed by a counter)."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self._model = model
        self._id = response_id
        self._created = created
        self._tools = 0
        self._block_tool: dict[int, int] = {}
        self._usage: dict[str, Any] = {}
        self._started = False
        self._usage_sent = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return hub_chunk(self._id, self._created, self._model, delta, finish)

    def _usage_chunk(self) -> list[dict[str, Any]]:
        if self._usage_sent or not self._started:
            return []
        self._usage_sent = True
        return [hub_usage_chunk(self._id, self._created, self._model, usage_from_body(self._usage))]

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        if not data.strip() or data.strip() == "[DONE]":
            return []
        try:
            obj = json.loads(data)
        except ValueError:
            raise UpstreamStreamError("The Anthropic upstream sent an event that is not JSON.") from None
        if not isinstance(obj, dict):
            return []
        kind = obj.get("type") or event
        if kind == "error":
            err = obj.get("error") or {}
            message = str(err.get("message") or "The Anthropic upstream reported an error.")
            raise UpstreamStreamError(message, status=_STATUS_OF_TYPE.get(str(err.get("type")), 502))
        if kind == "message_start":
            self._started = True
            usage = obj_at(obj_at(obj, "message"), "usage")
            self._usage.update({k: v for k, v in usage.items() if v is not None})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(int_of(obj.get("index")), obj.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(int_of(obj.get("index")), obj.get("delta") or {})
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (obj.get("usage") or {}).items() if v is not None})
            stop = (obj.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_from_anthropic(stop, bool(self._block_tool)))]
        if kind == "message_stop":
            return self._usage_chunk()
        return []  # ping, content_block_stop, unknown events

    def _block_start(self, index: int, block: dict[str, Any]) -> list[dict[str, Any]]:
        btype = block.get("type")
        if btype == "tool_use":
            k = self._tools
            self._tools += 1
            self._block_tool[index] = k
            start_input = block.get("input")
            args = dumps(start_input) if isinstance(start_input, dict) and start_input else ""
            call = {"index": k, "id": block.get("id") or f"call_{k}", "type": "function",
                    "function": {"name": block.get("name") or "", "arguments": args}}
            return [self._chunk({"tool_calls": [call]})]
        if btype == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if btype == "thinking":
            delta: dict[str, Any] = {}
            if block.get("thinking"):
                delta["reasoning_content"] = block["thinking"]
            if block.get("signature"):
                delta["reasoning_signature"] = block["signature"]
            return [self._chunk(delta)] if delta else []
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        dtype = delta.get("type")
        if dtype == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if dtype == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if dtype == "signature_delta" and delta.get("signature"):
            return [self._chunk({"reasoning_signature": delta["signature"]})]
        if dtype == "input_json_delta" and delta.get("partial_json") and index in self._block_tool:
            call = {"index": self._block_tool[index], "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def finish(self) -> list[dict[str, Any]]:
        return self._usage_chunk()
