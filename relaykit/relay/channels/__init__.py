"""Channel types: one small class per upstream kind, in a registry.

A channel type says which dialects its upstream speaks and how to open a request to it
(URL rules, auth header).  The built-in ``mock`` type is one entry like any other.
"""

from __future__ import annotations

from .anthropic import AnthropicChannel
from .base import ChannelKind, UpstreamRequest
from .gemini import GeminiChannel
from .mock import MockChannel
from .openai import AzureChannel, OpenAIChannel

REGISTRY: dict[str, ChannelKind] = {
    "openai": OpenAIChannel(),
    "openai-compatible": OpenAIChannel(responses=False),
    "deepseek": OpenAIChannel(responses=False),
    "azure": AzureChannel(),
    "anthropic": AnthropicChannel(),
    "gemini": GeminiChannel(),
    "mock": MockChannel(),
}

__all__ = ["REGISTRY", "ChannelKind", "UpstreamRequest", "kind_for"]


def kind_for(channel_type: str) -> ChannelKind | None:
    return REGISTRY.get(channel_type)
