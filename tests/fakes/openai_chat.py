"""Fake OpenAI upstream: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Wire format per PROTOCOLS.md §1: chat.completion objects, SSE chunks
``data: {...}`` ending with ``data: [DONE]``, the usage chunk (``choices: []``)
only when ``stream_options.include_usage`` is true (every other chunk then
carries ``"usage": null``), OpenAI-shaped errors.

Reasoning: ``reasoning_effort`` (not ``"none"``) bills
:data:`~tests.fakes.base.REASONING_TEXT` as hidden ``reasoning_tokens``;
DeepSeek style ``thinking: {"type": "enabled"}`` (or a model name containing
``reasoner``) also streams it as ``reasoning_content``.  ``max_tokens`` /
``max_completion_tokens`` cut the text and give ``finish_reason: "length"``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import Answer, FakeUpstream, Recorded, Reply, flatten_text, sse_frame

__all__ = ["FakeOpenAIChat", "openai_error_body"]

_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}`` (PROTOCOLS §1.4)."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _mask(key: str) -> str:
    return key if len(key) <= 8 else f"{key[:3]}***{key[-4:]}"


class FakeOpenAIChat(FakeUpstream):
    """OpenAI Chat Completions fake (also serves the OpenAI model list)."""

    vendor = "openai"
    default_models = ("gpt-4o", "gpt-4o-mini", "o3-mini")

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/chat/completions", self._chat)
        router.add_get("/v1/models", self._models)
        router.add_get("/v1/models/{model}", self._model)

    # ---------------------------------------------------------------- auth

    def received_key(self, request: web.Request) -> str | None:
        return request.headers.get("Authorization")

    def check_auth(self, request: web.Request) -> web.StreamResponse | None:
        if not self.keys:
            return None
        header = request.headers.get("Authorization", "")
        key = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if key in self.keys:
            return None
        if not key:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            message = f"Incorrect API key provided: {_mask(key)}. You can find your API key at https://platform.openai.com/account/api-keys."
        return self.error_response(401, message)

    def error_body(self, status: int, message: str) -> Any:
        return openai_error_body(status, message)

    def bad_request(self, message: str, param: str | None = None) -> web.Response:
        body = openai_error_body(400, message)
        body["error"]["param"] = param
        return web.json_response(body, status=400)

    # -------------------------------------------------------------- models

    async def _models(self, request: web.Request) -> web.StreamResponse:
        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply:
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]
            return Reply(json_body={"object": "list", "data": data})

        return await self.serve(request, build, stream=False)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]

        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
            if model not in self.models:
                return self.error_response(404, f"The model '{model}' does not exist")
            return Reply(json_body={"id": model, "object": "model", "created": 1700000000, "owned_by": "fake"})

        return await self.serve(request, build, stream=False)

    # ---------------------------------------------------------------- chat

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = self.record_of(request).json
        stream = isinstance(body, dict) and bool(body.get("stream"))
        return await self.serve(request, self._build_chat, stream=stream)

    def chat_usage(self, usage: dict[str, int]) -> dict[str, Any]:
        """Normalised usage -> OpenAI chat ``usage`` object."""
        return {
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "prompt_tokens_details": {"cached_tokens": usage["cache_read_tokens"], "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": usage["reasoning_tokens"],
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _plan_chat(self, record: Recorded, body: dict[str, Any]) -> Answer:
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        last = messages[-1] if messages else {}
        last_role = str(last.get("role", ""))
        users = [m for m in messages if m.get("role") == "user"]
        last_user_text = flatten_text(users[-1].get("content")) if users else ""
        tool_result = flatten_text(last.get("content")) if last_role in ("tool", "function") else None
        thinking = body.get("thinking")
        visible = (isinstance(thinking, dict) and thinking.get("type") == "enabled") or "reasoner" in str(
            body.get("model", "")
        )
        effort = body.get("reasoning_effort")
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        return self.plan_answer(
            record,
            prompt_texts=[flatten_text(m.get("content")) for m in messages],
            last_role=last_role,
            last_user_text=last_user_text,
            tool_result=tool_result,
            has_tools=bool(body.get("tools")),
            reasoning=visible,
            hidden_reasoning=effort not in (None, "none"),
            limit=limit if isinstance(limit, int) else None,
        )

    def _build_chat(self, request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
        body = record.json
        if not isinstance(body, dict):
            return self.bad_request("We could not parse the JSON body of your request.")
        if not body.get("model"):
            return self.bad_request("you must provide a model parameter", "model")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return self.bad_request("Invalid 'messages': empty array. Expected an array with minimum length 1.", "messages")
        answer = self._plan_chat(record, body)
        model = str(body["model"])
        chat_id = self.next_id("chatcmpl-fake")
        created = self.now()
        call_id = f"call_{chat_id[-6:]}fake"
        if answer.kind == "tool_call":
            finish = "tool_calls"
        elif answer.truncated:
            finish = "length"
        else:
            finish = "stop"
        usage = self.chat_usage(answer.usage)
        headers = {"x-request-id": f"req_{chat_id}", "openai-processing-ms": "1"}

        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
            if answer.reasoning is not None:
                message["reasoning_content"] = answer.reasoning
            if answer.kind == "tool_call":
                message["tool_calls"] = [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": answer.tool_name, "arguments": answer.tool_args_json},
                    }
                ]
            else:
                message["content"] = answer.text
            obj: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
                "system_fingerprint": "fp_fake",
            }
            if with_usage:
                obj["usage"] = usage
            self.last_usage_wire = usage if with_usage else None
            return Reply(json_body=obj, headers=headers)

        options = body.get("stream_options")
        usage_asked = isinstance(options, dict) and bool(options.get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if usage_asked:
                data["usage"] = None
            return sse_frame(data)

        frames = [chunk({"role": "assistant", "content": "", "refusal": None})]
        frames += [chunk({"reasoning_content": d}) for d in answer.reasoning_deltas]
        if answer.kind == "tool_call":
            frames.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": answer.tool_name, "arguments": ""},
                            }
                        ]
                    }
                )
            )
            frames += [
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
                for part in answer.tool_args_fragments
            ]
        else:
            frames += [chunk({"content": d}) for d in answer.deltas]
        tail = [chunk({}, finish)]
        if usage_asked and with_usage:
            tail.append(
                sse_frame(
                    {
                        "id": chat_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        tail.append(b"data: [DONE]\n\n")
        self.last_usage_wire = usage if (usage_asked and with_usage) else None
        error = {"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": None, "code": None}}
        return Reply(
            frames=frames + tail,
            n_tail=len(tail),
            terminator=True,
            error_frame=sse_frame(error),
            garbage_frames=[b'data: {"id": "chatcmpl-garbage", "choices": [{"delta": \n\n', b"data: [DONE]\n\n"],
            headers=headers,
        )
