"""Gemini generateContent upstreams: the model and the stream choice live in the URL,
the key in ``x-goog-api-key`` (never in the query string, where it would reach logs)."""

from __future__ import annotations

from ...dialects import gemini as gemini_dialect
from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from .base import UpstreamRequest, join_url


class GeminiChannel:
    dialects = ("gemini",)

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        return "gemini"

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: UpstreamRequest) -> Reply:
        path = gemini_dialect.upstream_path(req.model, req.stream)
        if channel.api_version and path.startswith("/v1beta/"):
            path = f"/{channel.api_version}/" + path[len("/v1beta/"):]
        headers = {"Content-Type": "application/json", "x-goog-api-key": key}
        return await pool.post(join_url(channel.base_url, path), headers=headers, body=req.body,
                               timeouts=channel.timeouts)
