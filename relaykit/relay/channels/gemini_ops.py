"""Gemini embeddings: every embedding request reaches a Gemini upstream as
``:batchEmbedContents`` (one request per input), the key in ``x-goog-api-key``."""

from __future__ import annotations

from urllib.parse import quote

from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from .base import join_url
from .ops import EMBEDDINGS, OpRequest, send


class GeminiOps:
    def wire(self, op: str) -> str | None:
        return "gemini" if op == EMBEDDINGS else None

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: OpRequest) -> Reply:
        version = channel.api_version or "v1beta"
        name = quote(req.model.removeprefix("models/"), safe="-._")
        url = join_url(channel.base_url, f"/{version}/models/{name}:batchEmbedContents")
        headers = {"Content-Type": "application/json", "x-goog-api-key": key}
        return await send(pool, url, headers=headers, body=req.body, timeouts=channel.timeouts)
