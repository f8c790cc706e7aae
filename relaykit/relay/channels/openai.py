"""OpenAI and OpenAI-compatible upstreams (openai, openai-compatible, deepseek)."""

from __future__ import annotations

from ...domain import Channel
from ..upstream import HttpReply, UpstreamPool
from .base import join_url


class OpenAIChannel:
    dialect = "openai_chat"
    supports_chat = True

    async def open_chat(self, pool: UpstreamPool, channel: Channel, key: str, body: bytes,
                        stream: bool) -> HttpReply:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json"}
        return await pool.post(join_url(channel.base_url, "/v1/chat/completions"), headers=headers,
                               body=body, timeouts=channel.timeouts)
