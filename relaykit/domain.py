"""Frozen value objects shared by every layer (settings, store, relay, dialects, CLI).

Nothing here does I/O; these are the nouns of the product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

ChannelType = Literal[
    "openai", "azure", "anthropic", "gemini", "deepseek", "openai-compatible", "jina", "cohere",
    "xinference", "midjourney", "suno", "kling", "jimeng", "mock",
]
CHANNEL_TYPES: tuple[str, ...] = (
    "openai", "azure", "anthropic", "gemini", "deepseek", "openai-compatible", "jina", "cohere",
    "xinference", "midjourney", "suno", "kling", "jimeng", "mock",
)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    ratio: Decimal
    description: str = ""


@dataclass(frozen=True, slots=True)
class Price:
    """A model's price, normalised to one-api style ratios.

    ``model_ratio`` 1 means $2 per 1M prompt tokens; the other ratios multiply it.
    ``per_call_usd`` set means the model is billed per call instead of per token.
    """

    model: str
    model_ratio: Decimal = Decimal(0)
    completion_ratio: Decimal = Decimal(1)
    cache_read_ratio: Decimal = Decimal(1)
    cache_write_ratio: Decimal = Decimal(1)
    per_call_usd: Decimal | None = None
    # Non-token bases (at most one per model; see settings._price): USD per image (times the
    # size and quality factors), per second of audio, per character of input text.
    per_image_usd: Decimal | None = None
    image_size_factors: tuple[tuple[str, Decimal], ...] = ()
    image_quality_factors: tuple[tuple[str, Decimal], ...] = ()
    per_second_usd: Decimal | None = None
    per_char_usd: Decimal | None = None
    # Audio tokens (realtime, audio-in chat), as multiples of ``model_ratio``; None = text rate.
    audio_input_ratio: Decimal | None = None
    audio_output_ratio: Decimal | None = None

    @property
    def basis(self) -> str:
        """What the model is billed by: "call", "image", "second", "char" or "token"."""
        if self.per_call_usd is not None:
            return "call"
        if self.per_image_usd is not None:
            return "image"
        if self.per_second_usd is not None:
            return "second"
        if self.per_char_usd is not None:
            return "char"
        return "token"

    @property
    def input_usd_per_m(self) -> Decimal:
        return self.model_ratio * 2

    @property
    def output_usd_per_m(self) -> Decimal:
        return self.model_ratio * 2 * self.completion_ratio


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 60.0
    idle: float = 120.0


@dataclass(frozen=True, slots=True)
class Channel:
    name: str
    type: str
    base_url: str
    keys: tuple[str, ...]
    models: tuple[str, ...]
    model_map: tuple[tuple[str, str], ...] = ()
    groups: tuple[str, ...] = ("default",)
    priority: int = 0
    weight: int = 1
    timeouts: Timeouts = field(default_factory=Timeouts)
    enabled: bool = True
    api_version: str | None = None
    api: str = "chat"  # "responses": an OpenAI upstream that is reached through Responses only

    def upstream_model(self, model: str) -> str:
        for src, dst in self.model_map:
            if src == model:
                return dst
        return model

    def serves(self, model: str) -> bool:
        return model in self.models or any(src == model for src, _ in self.model_map)

    def client_models(self) -> tuple[str, ...]:
        """Every model name a client may ask this channel for."""
        names = list(self.models)
        names.extend(src for src, _ in self.model_map if src not in names)
        return tuple(names)


@dataclass(frozen=True, slots=True)
class Usage:
    """Normalised token usage.  ``prompt_tokens`` includes cache reads and writes."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    audio_prompt_tokens: int = 0      # part of prompt_tokens that was audio (realtime)
    audio_completion_tokens: int = 0  # part of completion_tokens that was audio

    @property
    def uncached_prompt_tokens(self) -> int:
        return max(0, self.prompt_tokens - self.cache_read_tokens - self.cache_write_tokens)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A relay token as the hot path sees it (from the in-memory cache)."""

    id: int
    user_id: int
    name: str
    status: str
    expires_at: float | None
    unlimited: bool
    group: str | None
    models: tuple[str, ...]
    ips: tuple[str, ...]
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class UserInfo:
    id: int
    name: str
    group: str
    status: str
    role: str = "customer"
