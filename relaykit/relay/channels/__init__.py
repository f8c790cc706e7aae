"""Channel types: one small class per upstream kind, in a registry.

A channel type says which dialect its upstream speaks and how to open a request to it
(URL rules, auth header).  The built-in ``mock`` type is one entry like any other.
"""

from __future__ import annotations

from .base import ChannelKind
from .mock import MockChannel
from .openai import OpenAIChannel

REGISTRY: dict[str, ChannelKind] = {
    "openai": OpenAIChannel(),
    "openai-compatible": OpenAIChannel(),
    "deepseek": OpenAIChannel(),
    "mock": MockChannel(),
}


def kind_for(channel_type: str) -> ChannelKind | None:
    return REGISTRY.get(channel_type)
