"""Fake Gemini upstream (Gemini Developer API shape).

Routes, under both ``/v1beta`` and ``/v1`` (google-genai 3.x uses ``v1``):

* ``POST /{ver}/models/{model}:generateContent``
* ``POST /{ver}/models/{model}:streamGenerateContent?alt=sse`` -- each event is
  ``data: <GenerateContentResponse>`` + ``\\r\\n\\r\\n`` (like Google); without
  ``alt=sse`` the chunks are streamed as one JSON array, like the real API
* ``POST /{ver}/models/{model}:countTokens``
* ``GET /{ver}/models`` and ``GET /{ver}/models/{model}``

Wire format per PROTOCOLS.md §4: one text word per stream chunk, the last
chunk carries ``finishReason`` and the full ``usageMetadata`` (earlier chunks
only ``promptTokenCount``/``totalTokenCount``); ``thoughtsTokenCount`` when a
``thinkingConfig`` asks for thinking (not ``thinkingBudget: 0``), thought
parts (``"thought": true``) when ``includeThoughts`` is true; a function call
arrives whole in one chunk (Gemini does not fragment arguments) with
``finishReason: "STOP"``.  Errors ``{"error": {"code", "message", "status"}}``.

Auth: ``x-goog-api-key`` header or ``?key=``.  With ``keys`` set, a wrong key
gets Google's 400 ``INVALID_ARGUMENT`` / ``API_KEY_INVALID`` and a missing one
403 ``PERMISSION_DENIED`` (that is what Google answers; ``echo_key_401`` is the
401 mode).  Request fields are read in both camelCase and snake_case.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .base import Answer, FakeUpstream, Recorded, Reply, count_words, flatten_text, sse_frame

__all__ = ["FakeGemini", "gemini_error_body"]

_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_error_body(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """``{"error": {"code", "message", "status"[, "details"]}}`` (§4.5)."""
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUSES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
        ]
    return {"error": error}


def _get(obj: Any, camel: str) -> Any:
    """Field ``camel`` of a proto3-JSON object, also accepting snake_case."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake)


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = _get(content, "parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _part_texts(content: Any) -> list[str]:
    """Texts of a Content: text parts (not thoughts) and function responses."""
    if isinstance(content, str):
        return [content]
    texts = []
    for part in _parts(content):
        if isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
        response = _get(part, "functionResponse")
        if isinstance(response, dict):
            texts.append(flatten_text(response.get("response")))
    return texts


class FakeGemini(FakeUpstream):
    """Gemini generateContent fake."""

    vendor = "gemini"
    default_models = ("gemini-2.5-flash", "gemini-2.5-pro")

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        for version in ("v1beta", "v1"):
            router.add_post(f"/{version}/models/{{name}}", self._post_model)
            router.add_get(f"/{version}/models", self._models)
            router.add_get(f"/{version}/models/{{name}}", self._model)

    # ---------------------------------------------------------------- auth

    def received_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    def check_auth(self, request: web.Request) -> web.StreamResponse | None:
        if not self.keys:
            return None
        key = self.received_key(request)
        if key in self.keys:
            return None
        if not key:
            return web.json_response(
                gemini_error_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established identity). "
                    "Please use API Key or other form of API consumer identity to call this API.",
                ),
                status=403,
            )
        return web.json_response(
            gemini_error_body(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"), status=400
        )

    def error_body(self, status: int, message: str) -> Any:
        return gemini_error_body(status, message)

    def bad_request(self, message: str) -> web.Response:
        return self.error_response(400, message)

    # -------------------------------------------------------------- models

    def _model_info(self, model: str) -> dict[str, Any]:
        return {
            "name": f"models/{model}",
            "baseModelId": model,
            "version": "001",
            "displayName": model.replace("-", " ").title(),
            "description": f"Fake {model}",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "temperature": 1.0,
            "maxTemperature": 2.0,
            "topP": 0.95,
            "topK": 64,
            "thinking": True,
        }

    async def _models(self, request: web.Request) -> web.StreamResponse:
        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply:
            return Reply(json_body={"models": [self._model_info(m) for m in self.models]})

        return await self.serve(request, build, stream=False)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        model = request.match_info["name"]

        def build(request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
            if model not in self.models:
                return self.error_response(404, f"models/{model} is not found for API version v1beta")
            return Reply(json_body=self._model_info(model))

        return await self.serve(request, build, stream=False)

    # ------------------------------------------------------------- actions

    async def _post_model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        model, _, action = name.rpartition(":")
        if action == "generateContent":
            return await self.serve(request, lambda r, rec, u: self._build_generate(rec, model, u, None), stream=False)
        if action == "streamGenerateContent":
            sse = request.query.get("alt") == "sse"
            return await self.serve(request, lambda r, rec, u: self._build_generate(rec, model, u, sse), stream=True)
        if action == "countTokens":
            return await self.serve(request, self._build_count, stream=False)
        self.record_of(request).mode = "ok"
        return self.error_response(404, f"Method not found: {name}")

    def prompt_texts(self, body: dict[str, Any]) -> list[str]:
        system = _get(body, "systemInstruction")
        texts = _part_texts(system) if system is not None else []
        for content in _get(body, "contents") or []:
            texts += _part_texts(content)
        return texts

    def _build_count(self, request: web.Request, record: Recorded, with_usage: bool) -> Reply | web.Response:
        body = record.json
        if not isinstance(body, dict):
            return self.bad_request("Invalid JSON payload received.")
        inner = _get(body, "generateContentRequest")
        if isinstance(inner, dict):
            body = inner
        elif not isinstance(_get(body, "contents"), list):
            return self.bad_request("* CountTokensRequest.contents: contents is not specified")
        total = sum(count_words(t) for t in self.prompt_texts(body))
        return Reply(json_body={"totalTokens": total, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": total}]})

    def _plan_generate(self, record: Recorded, body: dict[str, Any]) -> tuple[Answer, bool]:
        contents = [c for c in _get(body, "contents") if isinstance(c, dict)]
        last = contents[-1] if contents else {}
        responses = [_get(p, "functionResponse") for p in _parts(last) if _get(p, "functionResponse")]
        last_role = "tool" if responses else str(last.get("role") or "user")
        users = [c for c in contents if (c.get("role") or "user") == "user" and any("text" in p for p in _parts(c))]
        last_user_text = " ".join(
            p["text"] for p in _parts(users[-1]) if isinstance(p.get("text"), str) and not p.get("thought")
        ) if users else ""
        has_tools = any(
            _get(t, "functionDeclarations") for t in (_get(body, "tools") or []) if isinstance(t, dict)
        )
        config = _get(body, "generationConfig") or {}
        thinking_config = _get(config, "thinkingConfig")
        thinking = isinstance(thinking_config, dict) and _get(thinking_config, "thinkingBudget") != 0
        show = bool(thinking and _get(thinking_config, "includeThoughts"))
        limit = _get(config, "maxOutputTokens")
        answer = self.plan_answer(
            record,
            prompt_texts=self.prompt_texts(body),
            last_role=last_role,
            last_user_text=last_user_text,
            tool_result=" ".join(flatten_text(r.get("response")) for r in responses) if responses else None,
            has_tools=bool(has_tools),
            reasoning=show,
            hidden_reasoning=thinking,
            limit=limit if isinstance(limit, int) else None,
        )
        return answer, thinking

    @staticmethod
    def gemini_usage(usage: dict[str, int], thinking: bool) -> dict[str, Any]:
        """Normalised usage -> ``usageMetadata`` (thoughts not in candidates)."""
        wire: dict[str, Any] = {
            "promptTokenCount": usage["prompt_tokens"],
            "candidatesTokenCount": usage["completion_tokens"] - usage["reasoning_tokens"],
            "totalTokenCount": usage["total_tokens"],
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage["prompt_tokens"]}],
        }
        if thinking:
            wire["thoughtsTokenCount"] = usage["reasoning_tokens"]
        if usage["cache_read_tokens"]:
            wire["cachedContentTokenCount"] = usage["cache_read_tokens"]
        return wire

    def _build_generate(
        self, record: Recorded, model: str, with_usage: bool, sse: bool | None
    ) -> Reply | web.Response:
        body = record.json
        if not isinstance(body, dict):
            return self.bad_request("Invalid JSON payload received.")
        if not isinstance(_get(body, "contents"), list) or not _get(body, "contents"):
            return self.bad_request("* GenerateContentRequest.contents: contents is not specified")
        answer, thinking = self._plan_generate(record, body)
        response_id = self.next_id("fakeresp")
        finish = "MAX_TOKENS" if answer.truncated else "STOP"
        signature = self.signature_for(f"{response_id}:{answer.reasoning or ''}") if thinking else None
        thought_part = {"text": answer.reasoning, "thought": True} if answer.reasoning else None
        call_part: dict[str, Any] | None = None
        if answer.kind == "tool_call":
            call_part = {"functionCall": {"name": answer.tool_name, "args": answer.tool_args}}
            if signature:
                call_part["thoughtSignature"] = signature
        usage = self.gemini_usage(answer.usage, thinking) if with_usage else None
        self.last_usage_wire = usage

        def response(parts: list[dict[str, Any]], final: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            obj: dict[str, Any] = {"candidates": [candidate]}
            if final:
                candidate["finishReason"] = finish
            if usage is not None:
                obj["usageMetadata"] = usage if final else {
                    "promptTokenCount": usage["promptTokenCount"],
                    "totalTokenCount": usage["promptTokenCount"],
                }
            obj["modelVersion"] = model
            obj["responseId"] = response_id
            return obj

        if sse is None:
            parts: list[dict[str, Any]] = [thought_part] if thought_part else []
            parts.append(call_part if call_part else {"text": answer.text})
            return Reply(json_body=response(parts, True))

        chunk_parts: list[list[dict[str, Any]]] = [[thought_part]] if thought_part else []
        if call_part:
            chunk_parts.append([call_part])
        else:
            chunk_parts += [[{"text": d}] for d in answer.deltas] or [[{"text": ""}]]
        chunks = [response(p, i == len(chunk_parts) - 1) for i, p in enumerate(chunk_parts)]
        error = gemini_error_body(500, "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting")
        if sse:
            return Reply(
                frames=[sse_frame(c, eol="\r\n", compact=False) for c in chunks],
                n_tail=1,
                terminator=False,
                error_frame=sse_frame(error, eol="\r\n", compact=False),
                garbage_frames=[b'data: {"candidates": [{"content": {"role": "mod\r\n\r\n'],
            )
        frames = [("[" if i == 0 else ",\r\n").encode() + json.dumps(c).encode() for i, c in enumerate(chunks)]
        frames.append(b"]")
        return Reply(
            frames=frames,
            n_tail=2,
            terminator=True,
            error_frame=b",\r\n" + json.dumps(error).encode() + b"]",
            garbage_frames=[b'[{"candidates": [{"content": {"role": "mod'],
            content_type="application/json",
        )
