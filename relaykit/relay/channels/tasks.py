"""Channel types that run long tasks instead of chat: ``midjourney``, ``suno``, ``kling``,
``jimeng`` (their adapters live in relay/tasks/).

They are registered like every channel type so the router plans them for their models
(``mj_imagine``, ``suno_music``, ``kling-v1``...).  A chat request routed to one is
refused with one sentence pointing at the right endpoint: a capability a channel lacks
is a typed error, not a stub.
"""

from __future__ import annotations

from ...domain import Channel
from ...errors import InvalidRequest
from ..upstream import Reply, UpstreamPool
from .base import UpstreamRequest

ENDPOINTS = {"midjourney": "/mj/submit/imagine", "suno": "/suno/submit/music",
             "kling": "/v1/video/generations", "jimeng": "/v1/video/generations"}


class TaskChannel:
    dialects = ("openai_chat",)  # what a chat request would be converted to before it is refused

    def __init__(self, channel_type: str) -> None:
        self.channel_type = channel_type

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        return "openai_chat"

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: UpstreamRequest) -> Reply:
        raise InvalidRequest(f"The model '{req.model}' runs as a task on a {self.channel_type} channel, not as "
                             f"a chat; submit it to {ENDPOINTS[self.channel_type]}.", code="task_model")
