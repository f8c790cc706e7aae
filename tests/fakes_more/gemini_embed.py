"""A fake Gemini embeddings upstream: ``:batchEmbedContents`` and ``:embedContent``
under ``/v1beta/models/`` with the key in ``x-goog-api-key``.  Vectors follow
``fake_vector`` (``outputDimensionality`` honoured, 4 by default); with
``report_usage`` the batch reply carries ``usageMetadata.promptTokenCount`` (words)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import SmallFake, json_of, words
from .openai_media import fake_vector


def _text(content: dict[str, Any]) -> str:
    return "\n".join(p.get("text", "") for p in content.get("parts", []))


class FakeGeminiEmbed(SmallFake):
    key_header = "x-goog-api-key"

    def __init__(self, key: str | None = None) -> None:
        self.report_usage = False
        super().__init__(key)

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key")

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1beta/models/{target}", self.action)

    async def action(self, request: web.Request) -> web.Response:
        body = await json_of(request)
        self.record(request, body)
        model, _, method = request.match_info["target"].rpartition(":")
        if method == "embedContent":
            return web.json_response({"embedding": {"values": fake_vector(
                _text(body["content"]), body.get("outputDimensionality") or 4)}})
        if method != "batchEmbedContents":
            return web.json_response({"error": {"code": 404, "message": "no such method", "status": "NOT_FOUND"}},
                                     status=404)
        for r in body["requests"]:
            if r.get("model") != f"models/{model}":
                return web.json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                    "message": "model mismatch"}}, status=400)
        texts = [_text(r["content"]) for r in body["requests"]]
        out: dict[str, Any] = {"embeddings": [
            {"values": fake_vector(t, r.get("outputDimensionality") or 4)} for t, r in zip(texts, body["requests"])]}
        if self.report_usage:
            out["usageMetadata"] = {"promptTokenCount": sum(words(t) for t in texts)}
        return web.json_response(out)
