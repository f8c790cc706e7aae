"""Jina AI upstreams: ``/v1/rerank`` in Jina's own shape and OpenAI-shaped
``/v1/embeddings``; Bearer auth.  No chat."""

from __future__ import annotations

from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from .ops import EMBEDDINGS, RERANK, MediaOnly, OpRequest, post_path

PATHS = {RERANK: "/v1/rerank", EMBEDDINGS: "/v1/embeddings"}


class JinaChannel(MediaOnly):
    label = "The jina"

    def wire(self, op: str) -> str | None:
        return {RERANK: "jina", EMBEDDINGS: "openai-compatible"}.get(op)

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: OpRequest) -> Reply:
        return await post_path(pool, channel, PATHS[req.op], key, req)
