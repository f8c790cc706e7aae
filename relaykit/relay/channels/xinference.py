"""Xinference upstreams (self-hosted): ``/v1/rerank`` in Xinference's Cohere-like shape
and OpenAI-shaped ``/v1/embeddings``.  A key is optional (Xinference runs without auth
unless configured); chat goes through an ``openai-compatible`` channel instead."""

from __future__ import annotations

from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from .ops import EMBEDDINGS, RERANK, MediaOnly, OpRequest, post_path

PATHS = {RERANK: "/v1/rerank", EMBEDDINGS: "/v1/embeddings"}


class XinferenceChannel(MediaOnly):
    label = "The xinference"

    def wire(self, op: str) -> str | None:
        return {RERANK: "xinference", EMBEDDINGS: "openai-compatible"}.get(op)

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: OpRequest) -> Reply:
        return await post_path(pool, channel, PATHS[req.op], key, req)
