"""OpenAI Responses streams ⇄ hub chunks, plus Responses usage, objects and errors.

Place in the pipeline: ``StreamFromHub`` turns hub chunks into the Responses event
sequence (``response.created``, ``response.in_progress``, ``output_item.added``,
``content_part.added``, ``output_text.delta`` …, ``response.completed``), each event
with ``event:`` and ``data:`` lines and an increasing ``sequence_number``, so that the
openai SDK's ``responses.stream()`` helper accepts it; ``StreamToHub`` turns a
Responses upstream's events into hub chunks.  The public names are re-exported by
``relaykit.dialects.openai_responses``.

Dropped on purpose:

* toward the client: hub ``reasoning_content`` is sent as a reasoning item's
  ``summary_text`` (the hub cannot tell a summary from raw reasoning) and it carries
  no ``encrypted_content``; refusal text is sent as ordinary ``output_text``;
  Anthropic/Gemini signatures are not sent; only choice 0 is streamed;
* from an upstream: built-in tool events (web search, file search, code interpreter,
  image generation, MCP), annotations, logprobs and ``encrypted_content``.
"""

from __future__ import annotations

import json
from typing import Any

from relaykit.dialects.hub import (
    HubDelta,
    UpstreamStreamError,
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

# --------------------------------------------------------------------------- shared shapes


def usage_from_body(body: dict[str, Any]) -> dict[str, Any]:
    """Hub usage from a Responses ``usage`` object (or a response that has one)."""
    usage = obj_at(body, "usage") or body
    details_in = usage.get("input_tokens_details") or {}
    details_out = usage.get("output_tokens_details") or {}
    prompt = int_of(usage.get("input_tokens"))
    completion = int_of(usage.get("output_tokens"))
    return make_usage(
        prompt,
        completion,
        cached=int_of(details_in.get("cached_tokens")),
        cache_write=int_of(details_in.get("cache_write_tokens")),
        reasoning=int_of(details_out.get("reasoning_tokens")),
        total=int_of(usage.get("total_tokens")) or prompt + completion,
    )


def usage_to_responses(usage: Any) -> dict[str, Any]:
    n = usage_numbers(usage)
    return {
        "input_tokens": n["prompt"],
        "input_tokens_details": {"cached_tokens": n["cached"], "cache_write_tokens": n["cache_write"]},
        "output_tokens": n["completion"],
        "output_tokens_details": {"reasoning_tokens": n["reasoning"]},
        "total_tokens": n["total"],
    }


_KIND_TYPES: dict[str, tuple[str, str | None]] = {
    "invalid_request": ("invalid_request_error", None),
    "authentication": ("authentication_error", "invalid_api_key"),
    "permission": ("permission_error", "permission_denied"),
    "not_found": ("invalid_request_error", "not_found"),
    "insufficient_quota": ("insufficient_quota", "insufficient_quota"),
    "rate_limit": ("rate_limit_error", "rate_limit_exceeded"),
    "upstream": ("server_error", "upstream_error"),
    "timeout": ("server_error", "upstream_timeout"),
}


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """OpenAI error envelope ``{"error": {"message", "type", "param", "code"}}``."""
    etype, code = _KIND_TYPES.get(kind, ("server_error" if status >= 500 else "invalid_request_error", kind or None))
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def status_for_finish(finish: str | None) -> tuple[str, dict[str, str] | None]:
    """Hub finish reason → Responses ``status`` and ``incomplete_details``."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(
    response_id: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    *,
    incomplete: dict[str, str] | None = None,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "model": model,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": None,
        "max_output_tokens": None,
        "metadata": {},
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "truncation": "disabled",
        "usage": usage,
    }


def item_ids(response_id: str) -> str:
    """The stem used for output item ids (``msg_<stem>_<n>``, ``fc_…``, ``rs_…``)."""
    return safe_id(response_id.removeprefix("resp_"), "x")


# --------------------------------------------------------------------------- hub → client


class StreamFromHub:
    """Hub chunks → Responses SSE events, emitted as soon as each delta arrives."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self._model = model
        self._id = response_id
        self._created = created
        self._stem = item_ids(response_id)
        self._seq = 0
        self._started = False
        self._closed = False
        self._output: list[dict[str, Any]] = []  # final item states, by output index
        self._open: int | None = None  # open message / reasoning item
        self._open_tools: list[int] = []  # open function_call items
        self._tool_items: dict[int, int] = {}  # hub tool index -> output index
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def _ev(self, etype: str, **payload: Any) -> bytes:
        data = {"type": etype, "sequence_number": self._seq, **payload}
        self._seq += 1
        return sse(data, etype)

    def _start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        snapshot = response_object(self._id, self._created, self._model, "in_progress", [], None)
        return self._ev("response.created", response=snapshot) + self._ev("response.in_progress", response=snapshot)

    def _add(self, item: dict[str, Any]) -> tuple[int, bytes]:
        index = len(self._output)
        self._output.append(item)
        return index, self._ev("response.output_item.added", output_index=index, item=self._public(item))

    def _close_item(self, index: int) -> bytes:
        item = self._output[index]
        out = b""
        if item["type"] == "message":
            part = {"type": "output_text", "text": item["_text"], "annotations": []}
            out += self._ev("response.output_text.done", item_id=item["id"], output_index=index, content_index=0,
                            text=item["_text"], logprobs=[])
            out += self._ev("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part)
            item["content"] = [part]
        elif item["type"] == "reasoning":
            part = {"type": "summary_text", "text": item["_text"]}
            out += self._ev("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                            summary_index=0, text=item["_text"])
            out += self._ev("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                            summary_index=0, part=part)
            item["summary"] = [part]
        else:
            out += self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                            name=item["name"], arguments=item["arguments"])
        del item["_text"]
        if item["type"] != "reasoning":
            item["status"] = "completed"
        return out + self._ev("response.output_item.done", output_index=index, item=dict(item))

    def _close_all(self) -> bytes:
        out = b""
        if self._open is not None:
            out += self._close_item(self._open)
            self._open = None
        for index in self._open_tools:
            out += self._close_item(index)
        self._open_tools = []
        return out

    def _open_kind(self, kind: str) -> tuple[int, bytes]:
        """The open message/reasoning item of this kind, opening a new one if needed."""
        if self._open is not None and self._output[self._open]["type"] == kind:
            return self._open, b""
        out = self._close_all()
        n = len(self._output)
        if kind == "message":
            item = {"type": "message", "id": f"msg_{self._stem}_{n}", "status": "in_progress", "role": "assistant",
                    "content": [], "_text": ""}
            index, added = self._add(item)
            part = {"type": "output_text", "text": "", "annotations": []}
            added += self._ev("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part)
        else:
            item = {"type": "reasoning", "id": f"rs_{self._stem}_{n}", "summary": [], "_text": ""}
            index, added = self._add(item)
            part = {"type": "summary_text", "text": ""}
            added += self._ev("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
                              summary_index=0, part=part)
        self._open = index
        return index, out + added

    def _public(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if k != "_text"}

    def _one(self, d: HubDelta) -> bytes:
        if d.kind == "reasoning":
            index, out = self._open_kind("reasoning")
            item = self._output[index]
            item["_text"] += d.text
            return out + self._ev("response.reasoning_summary_text.delta", item_id=item["id"], output_index=index,
                                  summary_index=0, delta=d.text)
        if d.kind in ("text", "refusal"):
            index, out = self._open_kind("message")
            item = self._output[index]
            item["_text"] += d.text
            return out + self._ev("response.output_text.delta", item_id=item["id"], output_index=index,
                                  content_index=0, delta=d.text, logprobs=[])
        if d.kind == "tool":
            out = b""
            known = self._tool_items.get(d.index)
            if known is not None:
                index = known
            else:
                if self._open is not None:
                    out += self._close_item(self._open)
                    self._open = None
                n = len(self._output)
                item = {"type": "function_call", "id": f"fc_{self._stem}_{n}",
                        "call_id": d.call_id or f"call_{self._stem}_{d.index}", "name": d.name or "",
                        "arguments": "", "status": "in_progress", "_text": ""}
                index, added = self._add(item)
                self._tool_items[d.index] = index
                self._open_tools.append(index)
                out += added
            if d.text:
                item = self._output[index]
                item["arguments"] += d.text
                out += self._ev("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                                delta=d.text)
            return out
        if d.kind == "finish":
            self._finish = d.text
            return self._close_all()
        if d.kind == "usage":
            self._usage = d.usage
        return b""

    def feed(self, chunk: dict[str, Any]) -> bytes:
        if self._closed:
            return b""
        return self._start() + b"".join(self._one(d) for d in read_chunk(chunk))

    def close(self) -> bytes:
        if self._closed:
            return b""
        self._closed = True
        out = self._start() + self._close_all()
        status, incomplete = status_for_finish(self._finish)
        final = response_object(self._id, self._created, self._model, status, list(self._output),
                                usage_to_responses(self._usage), incomplete=incomplete)
        return out + self._ev("response.completed" if status == "completed" else "response.incomplete", response=final)

    def error(self, message: str, status: int, *, passthrough: bool = False) -> bytes:
        """``response.failed`` closing this translator's stream.  ``passthrough``: the client
        already received lifecycle events of the upstream's own (its response id, its
        sequence numbers), so a second ``response.created`` would break the SDK's stream
        helper ("Lifecycle response identity changed"); the stand-alone ``error`` event is
        sent instead."""
        if self._closed:
            return b""
        self._closed = True
        code = "rate_limit_exceeded" if status == 429 else "server_error"
        if passthrough:
            return sse({"type": "error", "code": code, "message": message, "param": None,
                        "sequence_number": self._seq}, "error")
        out = self._start()
        output = [self._public(item) for item in self._output]
        failed = response_object(self._id, self._created, self._model, "failed", output,
                                 usage_to_responses(self._usage) if self._usage else None,
                                 error={"code": code, "message": message})
        return out + self._ev("response.failed", response=failed)


# --------------------------------------------------------------------------- upstream → hub


class StreamToHub:
    """Responses upstream events → hub chunks."""

    def __init__(self, *, model: str, response_id: str, created: int) -> None:
        self._model = model
        self._id = response_id
        self._created = created
        self._started = False
        self._tools: dict[str, int] = {}  # item id / "#<output_index>" -> hub tool index
        self._calls = 0
        self._args_seen: set[int] = set()
        self._text_seen: set[str] = set()
        self._reasoning_at: tuple[str, int] | None = None
        self._done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return hub_chunk(self._id, self._created, self._model, delta, finish)

    def _tool_index(self, obj: dict[str, Any]) -> int | None:
        k = self._tools.get(str(obj.get("item_id")))
        return k if k is not None else self._tools.get(f"#{obj.get('output_index')}")

    def feed(self, event: str | None, data: str) -> list[dict[str, Any]]:
        if not data.strip() or data.strip() == "[DONE]":
            return []
        try:
            obj = json.loads(data)
        except ValueError:
            raise UpstreamStreamError("The Responses upstream sent an event that is not JSON.") from None
        if not isinstance(obj, dict):
            return []
        etype = str(obj.get("type") or event or "")
        if etype == "error" or (isinstance(obj.get("error"), dict) and not etype.startswith("response.")):
            err = obj_at(obj, "error") or obj
            raise UpstreamStreamError(str(err.get("message") or "The Responses upstream reported an error."))
        if etype == "response.failed":
            err = obj_at(obj_at(obj, "response"), "error")
            raise UpstreamStreamError(str(err.get("message") or "The upstream response failed."))
        out: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}))
        if etype == "response.output_item.added":
            item = obj.get("item") or {}
            if item.get("type") == "function_call":
                k = self._calls
                self._calls += 1
                self._tools[str(item.get("id"))] = k
                self._tools[f"#{obj.get('output_index')}"] = k
                args = str(item.get("arguments") or "")
                if args:
                    self._args_seen.add(k)
                call = {"index": k, "id": item.get("call_id") or item.get("id") or f"call_{k}", "type": "function",
                        "function": {"name": str(item.get("name") or ""), "arguments": args}}
                out.append(self._chunk({"tool_calls": [call]}))
        elif etype == "response.function_call_arguments.delta":
            at = self._tool_index(obj)
            if at is not None and obj.get("delta"):
                self._args_seen.add(at)
                out.append(self._chunk({"tool_calls": [{"index": at, "function": {"arguments": str(obj["delta"])}}]}))
        elif etype == "response.function_call_arguments.done":
            at = self._tool_index(obj)
            if at is not None and at not in self._args_seen and obj.get("arguments"):
                self._args_seen.add(at)
                args_all = str(obj["arguments"])
                out.append(self._chunk({"tool_calls": [{"index": at, "function": {"arguments": args_all}}]}))
        elif etype == "response.output_text.delta" and obj.get("delta"):
            self._text_seen.add(str(obj.get("item_id")))
            out.append(self._chunk({"content": str(obj["delta"])}))
        elif etype == "response.output_text.done" and str(obj.get("item_id")) not in self._text_seen and obj.get("text"):
            out.append(self._chunk({"content": str(obj["text"])}))
        elif etype == "response.refusal.delta" and obj.get("delta"):
            out.append(self._chunk({"refusal": str(obj["delta"])}))
        elif etype in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta") and obj.get("delta"):
            part_at = (str(obj.get("item_id")), int_of(obj.get("summary_index", obj.get("content_index"))))
            sep = "\n\n" if self._reasoning_at is not None and self._reasoning_at != part_at else ""
            self._reasoning_at = part_at
            out.append(self._chunk({"reasoning_content": sep + str(obj["delta"])}))
        elif etype in ("response.completed", "response.incomplete") and not self._done:
            self._done = True
            response = obj.get("response") or {}
            reason = (response.get("incomplete_details") or {}).get("reason")
            if reason == "max_output_tokens":
                finish = "length"
            elif reason == "content_filter":
                finish = "content_filter"
            else:
                finish = "tool_calls" if self._tools else "stop"
            out.append(self._chunk({}, finish))
            if isinstance(response.get("usage"), dict):
                out.append(hub_usage_chunk(self._id, self._created, self._model, usage_from_body(response["usage"])))
        return out

    def finish(self) -> list[dict[str, Any]]:
        return []
