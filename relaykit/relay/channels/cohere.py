"""Cohere upstreams: rerank through ``/v2/rerank`` (v1 is legacy; the relay renders the
client's own shape whatever the upstream), Bearer auth.  No chat, no embeddings yet
(Cohere's embed API is not OpenAI-shaped)."""

from __future__ import annotations

from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from .ops import RERANK, MediaOnly, OpRequest, post_path


class CohereChannel(MediaOnly):
    label = "The cohere"

    def wire(self, op: str) -> str | None:
        return "cohere" if op == RERANK else None

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: OpRequest) -> Reply:
        return await post_path(pool, channel, "/v2/rerank", key, req)
