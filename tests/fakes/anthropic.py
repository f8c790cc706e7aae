"""Fake Anthropic upstream: ``POST /v1/messages``, ``/v1/messages/count_tokens``
and the Anthropic-shaped ``GET /v1/models``.

Wire format per PROTOCOLS.md §3: message objects; SSE with ``event:`` and
``data:`` lines in the order message_start (input usage incl. cache fields,
``output_tokens: 1``), content blocks (thinking with ``signature_delta``,
text, tool_use with ``input_json_delta``), one ``ping`` after the first
block start, message_delta (stop_reason, cumulative ``output_tokens``),
message_stop; errors ``{"type": "error", "error": {...}, "request_id"}``.

Auth: ``x-api-key`` or ``Authorization: Bearer`` (what SDK 2.x sends).
Validation like the real API: ``model``, ``max_tokens`` and non-empty
``messages`` are required.  ``thinking: {"type": "enabled"|"adaptive"}``
adds a thinking block.  ``?beta=true`` is ignored.

Usage mapping: ``input_tokens`` = prompt words - cache read - cache write
(Anthropic's input excludes cached tokens), ``cache_read_input_tokens`` /
``cache_creation_input_tokens`` from ``usage_override``
(``cache_read_tokens`` / ``cache_write_tokens``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import Answer, FakeUpstream, Recorded, Reply, count_words, flatten_text, sse_frame

__all__ = ["FakeAnthropic", "anthropic_error_body"]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_body(status: int, message: str, request_id: str = "req_fake") -> dict[str, Any]:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}`` (§3.5)."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}


def _block_texts(content: Any) -> list[str]:
    """Texts of a message's content: text blocks and tool results."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            texts.append(flatten_text(block.get("content")))
    return texts


class FakeAnthropic(FakeUpstream):
    """Anthropic Messages API fake."""

    vendor = "anthropic"
    default_models = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1")

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages", self._messages)
        router.add_post("/v1/messages/count_tokens", self._count_tokens)
        router.add_get("/v1/models", self._models)
        router.add_get("/v1/models/{model}", self._model)

    # ---------------------------------------------------------------- auth

    def received_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-api-key") or request.headers.get("Authorization")

    def check_auth(self, request: web.Request) -> web.StreamResponse | None:
        if not self.keys:
            return None
        key = request.headers.get("x-api-key")
        if key is None:
            header = request.headers.get("Authorization", "")
            key = header[7:].strip() if header[:7].lower() == "bearer " else None
        if key in self.keys:
            return None
        return self.error_response(401, "invalid x-api-key")

    def error_body(self, status: int, message: str) -> Any:
        return anthropic_error_body(status, message, self.next_id("req_fake"))

    def bad_request(self, message: str) -> web.Response:
        return self.error_response(400, message)

    # -------------------------------------------------------------- models

    def _model_info(self, model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": model.replace("-", " ").title(),
            "created_at": "2025-09-29T00:00:00Z",
        }

    async def _models(self, request: web.Request) -> web.StreamResponse:
        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply:
            data = [self._model_info(m) for m in self.models]
            return Reply(
                json_body={
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            )

        return await self.serve(request, build, stream=False)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]

        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
            if model not in self.models:
                return self.error_response(404, f"model: {model}")
            return Reply(json_body=self._model_info(model))

        return await self.serve(request, build, stream=False)

    # -------------------------------------------------------- count_tokens

    def prompt_texts(self, body: dict[str, Any]) -> list[str]:
        system = body.get("system")
        texts = _block_texts(system) if system is not None else []
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                texts += _block_texts(message.get("content"))
        return texts

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
            body = record.json
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return self.bad_request("messages: Field required")
            if not body.get("model"):
                return self.bad_request("model: Field required")
            total = sum(count_words(t) for t in self.prompt_texts(body))
            return Reply(json_body={"input_tokens": total})

        return await self.serve(request, build, stream=False)

    # ------------------------------------------------------------ messages

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = self.record_of(request).json
        stream = isinstance(body, dict) and bool(body.get("stream"))
        return await self.serve(request, self._build_messages, stream=stream)

    @staticmethod
    def anthropic_usage(usage: dict[str, int], *, streaming_start: bool = False) -> dict[str, Any]:
        """Normalised usage -> Anthropic ``usage`` (message_start shape if
        ``streaming_start``: ``output_tokens`` 1 and no extras)."""
        wire: dict[str, Any] = {
            "input_tokens": usage["input_tokens"],
            "cache_creation_input_tokens": usage["cache_write_tokens"],
            "cache_read_input_tokens": usage["cache_read_tokens"],
            "output_tokens": 1 if streaming_start else usage["completion_tokens"],
        }
        if not streaming_start:
            wire["cache_creation"] = {
                "ephemeral_5m_input_tokens": usage["cache_write_tokens"],
                "ephemeral_1h_input_tokens": 0,
            }
            wire["service_tier"] = "standard"
        return wire

    def _plan_messages(self, record: Recorded, body: dict[str, Any]) -> Answer:
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        last = messages[-1]
        content = last.get("content")
        results = [
            b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"
        ] if isinstance(content, list) else []
        last_role = "tool" if results else str(last.get("role", ""))
        users = [m for m in messages if m.get("role") == "user"]
        last_user_text = ""
        if users:
            ucontent = users[-1].get("content")
            if isinstance(ucontent, str):
                last_user_text = ucontent
            elif isinstance(ucontent, list):
                last_user_text = " ".join(
                    str(b.get("text", "")) for b in ucontent if isinstance(b, dict) and b.get("type") == "text"
                )
        thinking = body.get("thinking")
        wants_thinking = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
        return self.plan_answer(
            record,
            prompt_texts=self.prompt_texts(body),
            last_role=last_role,
            last_user_text=last_user_text,
            tool_result=" ".join(flatten_text(b.get("content")) for b in results) if results else None,
            has_tools=bool(body.get("tools")),
            reasoning=wants_thinking,
            limit=body["max_tokens"] if isinstance(body.get("max_tokens"), int) else None,
        )

    def _build_messages(self, request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
        body = record.json
        if not isinstance(body, dict):
            return self.bad_request("There was an error parsing the body of your request.")
        if not body.get("model"):
            return self.bad_request("model: Field required")
        if "max_tokens" not in body:
            return self.bad_request("max_tokens: Field required")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.bad_request("messages: Field required")
        answer = self._plan_messages(record, body)
        msg_id = self.next_id("msg_fake")
        model = str(body["model"])
        tool_id = f"toolu_{msg_id[-6:]}fake"
        signature = self.signature_for(f"{msg_id}:{answer.reasoning}") if answer.reasoning else ""
        if answer.kind == "tool_call":
            stop_reason = "tool_use"
        elif answer.truncated:
            stop_reason = "max_tokens"
        else:
            stop_reason = "end_turn"
        headers = {"request-id": f"req_{msg_id}", "anthropic-organization-id": "fake-org"}

        blocks: list[dict[str, Any]] = []
        if answer.reasoning is not None:
            blocks.append({"type": "thinking", "thinking": answer.reasoning, "signature": signature})
        if answer.kind == "tool_call":
            blocks.append({"type": "tool_use", "id": tool_id, "name": answer.tool_name, "input": answer.tool_args})
        else:
            blocks.append({"type": "text", "text": answer.text})

        if not body.get("stream"):
            obj: dict[str, Any] = {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
            }
            if with_usage:
                obj["usage"] = self.anthropic_usage(answer.usage)
            self.last_usage_wire = obj.get("usage")
            return Reply(json_body=obj, headers=headers)

        frames: list[bytes] = []

        def emit(kind: str, **payload: Any) -> None:
            frames.append(sse_frame({"type": kind, **payload}, kind))

        start: dict[str, Any] = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
        }
        if with_usage:
            start["usage"] = self.anthropic_usage(answer.usage, streaming_start=True)
        emit("message_start", message=start)
        for index, block in enumerate(blocks):
            if block["type"] == "thinking":
                emit("content_block_start", index=index, content_block={"type": "thinking", "thinking": "", "signature": ""})
                if index == 0:
                    emit("ping")
                for delta in answer.reasoning_deltas:
                    emit("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": delta})
                emit("content_block_delta", index=index, delta={"type": "signature_delta", "signature": signature})
            elif block["type"] == "text":
                emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
                if index == 0:
                    emit("ping")
                for delta in answer.deltas:
                    emit("content_block_delta", index=index, delta={"type": "text_delta", "text": delta})
            else:
                emit(
                    "content_block_start",
                    index=index,
                    content_block={"type": "tool_use", "id": tool_id, "name": answer.tool_name, "input": {}},
                )
                if index == 0:
                    emit("ping")
                for fragment in ["", *answer.tool_args_fragments]:
                    emit("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": fragment})
            emit("content_block_stop", index=index)
        message_delta: dict[str, Any] = {"delta": {"stop_reason": stop_reason, "stop_sequence": None}}
        if with_usage:
            message_delta["usage"] = {"output_tokens": answer.usage["completion_tokens"]}
            self.last_usage_wire = {**start["usage"], "output_tokens": answer.usage["completion_tokens"]}
        else:
            self.last_usage_wire = None
        emit("message_delta", **message_delta)
        emit("message_stop")
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return Reply(
            frames=frames,
            n_tail=2,
            terminator=True,
            error_frame=sse_frame(error, "error"),
            garbage_frames=[b'event: message_start\ndata: {"type": "message_start", "message": {"id": \n\n'],
            headers=headers,
        )
