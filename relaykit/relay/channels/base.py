"""The interface every channel type implements.

A channel type names the dialects its upstream speaks natively (preferred first), picks
the one to use for a given client dialect (the client's own when the upstream speaks it,
so the body passes through), and opens a request: URL rules and auth header are its
business, the body arrives ready in that dialect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ...domain import Channel
from ..upstream import Reply, UpstreamPool

# Client headers that carry protocol meaning and are forwarded to a same-vendor upstream.
# Nothing else from the client reaches an upstream (no cookies, no auth, no host).
VENDOR_HEADERS: dict[str, tuple[str, ...]] = {
    "anthropic": ("anthropic-version", "anthropic-beta"),
    "openai_chat": ("openai-beta",),
    "openai_responses": ("openai-beta",),
    "gemini": (),
}


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    dialect: str
    model: str
    body: bytes
    stream: bool
    headers: Mapping[str, str] = field(default_factory=dict)  # vendor headers from the client
    query: Mapping[str, str] = field(default_factory=dict)    # vendor query flags (anthropic ?beta=true)


class ChannelKind(Protocol):
    dialects: tuple[str, ...]

    def dialect_for(self, channel: Channel, client_dialect: str) -> str: ...

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: UpstreamRequest) -> Reply: ...


def join_url(base_url: str, path: str) -> str:
    """Append an API path, without doubling a version segment the operator already wrote
    (``https://host/v1`` + ``/v1/chat/completions``)."""
    base = base_url.rstrip("/")
    first = "/" + path.lstrip("/").split("/", 1)[0]
    if first.startswith("/v") and base.endswith(first):
        return base + "/" + path.lstrip("/").split("/", 1)[1]
    return base + path


def prefer(dialects: tuple[str, ...], client_dialect: str) -> str:
    return client_dialect if client_dialect in dialects else dialects[0]
