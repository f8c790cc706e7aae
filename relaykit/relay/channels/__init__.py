"""Channel types: one small class per upstream kind, in a registry.

A channel type says which dialects its upstream speaks and how to open a request to it
(URL rules, auth header).  The built-in ``mock`` type is one entry like any other.
"""

from __future__ import annotations

from .anthropic import AnthropicChannel
from .base import ChannelKind, UpstreamRequest
from .cohere import CohereChannel
from .gemini import GeminiChannel
from .gemini_ops import GeminiOps
from .jina import JinaChannel
from .mock import MockChannel
from .mock_ops import MockOps
from .openai import AzureChannel, OpenAIChannel, OpenAIOps
from .ops import OpKind
from .tasks import TaskChannel
from .xinference import XinferenceChannel

_JINA, _COHERE, _XINFERENCE = JinaChannel(), CohereChannel(), XinferenceChannel()

REGISTRY: dict[str, ChannelKind] = {
    "openai": OpenAIChannel(),
    "openai-compatible": OpenAIChannel(responses=False),
    "deepseek": OpenAIChannel(responses=False),
    "azure": AzureChannel(),
    "anthropic": AnthropicChannel(),
    "gemini": GeminiChannel(),
    "mock": MockChannel(),
    "jina": _JINA,
    "cohere": _COHERE,
    "xinference": _XINFERENCE,
    "midjourney": TaskChannel("midjourney"),
    "suno": TaskChannel("suno"),
    "kling": TaskChannel("kling"),
    "jimeng": TaskChannel("jimeng"),
}

# Non-chat operations (embeddings, rerank, images, audio, realtime), by channel type.
OPS: dict[str, OpKind] = {
    "openai": OpenAIOps(),
    "openai-compatible": OpenAIOps(compatible=True),
    "gemini": GeminiOps(),
    "jina": _JINA,
    "cohere": _COHERE,
    "xinference": _XINFERENCE,
    "mock": MockOps(),
}

__all__ = ["OPS", "REGISTRY", "ChannelKind", "OpKind", "UpstreamRequest", "kind_for", "ops_for"]


def kind_for(channel_type: str) -> ChannelKind | None:
    return REGISTRY.get(channel_type)


def ops_for(channel_type: str) -> OpKind | None:
    return OPS.get(channel_type)
