"""Anthropic Messages upstreams: ``x-api-key`` auth, ``anthropic-version`` always sent
(the client's when it gave one), ``anthropic-beta`` and ``?beta=true`` passed on."""

from __future__ import annotations

from urllib.parse import urlencode

from ...domain import Channel
from ..upstream import Reply, UpstreamPool
from .base import UpstreamRequest, join_url

DEFAULT_VERSION = "2023-06-01"


class AnthropicChannel:
    dialects = ("anthropic",)

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        return "anthropic"

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: UpstreamRequest) -> Reply:
        headers = {"Content-Type": "application/json", "anthropic-version": DEFAULT_VERSION,
                   "Accept": "text/event-stream" if req.stream else "application/json"}
        headers.update(req.headers)
        headers["x-api-key"] = key
        url = join_url(channel.base_url, "/v1/messages")
        if req.query.get("beta") == "true":
            url += "?" + urlencode({"beta": "true"})
        return await pool.post(url, headers=headers, body=req.body, timeouts=channel.timeouts)
