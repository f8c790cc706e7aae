"""The interface every channel type implements."""

from __future__ import annotations

from typing import Protocol

from ...domain import Channel
from ..upstream import Reply, UpstreamPool


class ChannelKind(Protocol):
    dialect: str          # the wire format the upstream speaks (a relaykit.dialects module NAME)
    supports_chat: bool

    async def open_chat(self, pool: UpstreamPool, channel: Channel, key: str, body: bytes,
                        stream: bool) -> Reply:
        """Send a chat request already in ``dialect`` and return the upstream's reply."""
        ...


def join_url(base_url: str, path: str) -> str:
    """Append an API path, without doubling a version segment the operator already wrote
    (``https://host/v1`` + ``/v1/chat/completions``)."""
    base = base_url.rstrip("/")
    first = "/" + path.lstrip("/").split("/", 1)[0]
    if first.startswith("/v") and base.endswith(first):
        return base + "/" + path.lstrip("/").split("/", 1)[1]
    return base + path
