"""The billing formula of SPEC §5, in exact decimal arithmetic.

quota = ceil(group_ratio × model_ratio × (prompt + completion × completion_ratio
             + cache_read × cache_read_ratio + cache_write × cache_write_ratio) × k)
per-call: quota = ceil(group_ratio × per_call_usd × quota_per_usd)

``prompt`` here is the uncached part of the prompt (hub usage counts cache tokens inside
``prompt_tokens``, so they are taken out first and billed at their own ratios).
``k = quota_per_usd / 500 000`` keeps "ratio 1 = $2 per 1M tokens" true when an operator
changes ``quota_per_usd`` (k is 1 at the default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from ..domain import Price, Usage

BASE_QUOTA_PER_USD = Decimal(500_000)


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def quota_for(usage: Usage, price: Price, group_ratio: Decimal, quota_per_usd: int) -> int:
    if price.per_call_usd is not None:
        return _ceil(group_ratio * price.per_call_usd * quota_per_usd)
    units = (Decimal(usage.uncached_prompt_tokens)
             + Decimal(usage.completion_tokens) * price.completion_ratio
             + Decimal(usage.cache_read_tokens) * price.cache_read_ratio
             + Decimal(usage.cache_write_tokens) * price.cache_write_ratio)
    return _ceil(group_ratio * price.model_ratio * units * Decimal(quota_per_usd) / BASE_QUOTA_PER_USD)


def hold_quota(price: Price, group_ratio: Decimal, quota_per_usd: int, *, prompt_tokens: int,
               max_output_tokens: int) -> int:
    """The largest cost the request can reach: every prompt token at the dearest input
    rate (a cache write may cost more than plain input) plus the full output budget."""
    if price.per_call_usd is not None:
        return _ceil(group_ratio * price.per_call_usd * quota_per_usd)
    dearest_input = max(Decimal(1), price.cache_write_ratio, price.cache_read_ratio)
    units = Decimal(prompt_tokens) * dearest_input + Decimal(max_output_tokens) * price.completion_ratio
    return _ceil(group_ratio * price.model_ratio * units * Decimal(quota_per_usd) / BASE_QUOTA_PER_USD)


def usd(quota: int, quota_per_usd: int) -> float:
    return quota / quota_per_usd


def usd_to_quota(amount_usd: Decimal, quota_per_usd: int) -> int:
    return int(math.floor(amount_usd * quota_per_usd))


# --------------------------------------------------------------------------- non-chat bases
# Embeddings, rerank, images, audio and realtime (relay.unary).  A model's price names one
# basis (``Price.basis``); an operation says which bases it can meter, and a model whose
# basis the operation cannot meter is refused before anything is forwarded, never served
# for free.


@dataclass(frozen=True, slots=True)
class Units:
    """What one non-chat request consumed (or, for a hold, may consume), in every unit a
    price can name.  Only the units of the model's basis are read."""

    usage: Usage | None = None
    images: tuple[tuple[str, str], ...] = ()  # (size, quality) of each image
    seconds: Decimal | None = None
    chars: int | None = None
    seconds_estimated: bool = False  # the audio's length was guessed (token estimates: usage.estimated)

    def estimated(self, price: Price) -> bool:
        """Whether the units the model's basis bills were estimated (the log's ``estimated``)."""
        basis = price.basis
        if basis == "token":
            return self.usage is not None and self.usage.estimated
        return basis == "second" and self.seconds_estimated


def image_factor(table: tuple[tuple[str, Decimal], ...], value: str) -> Decimal:
    """The factor for one size or quality.  No table, or no value (the model's default,
    which ``per_image`` prices): 1.  A value the table does not name (``auto``, a size the
    operator did not list): the largest factor, so an unlisted value never costs less
    than a listed one."""
    if not table or not value:
        return Decimal(1)
    for name, factor in table:
        if name == value:
            return factor
    return max(f for _, f in table)


def image_usd(price: Price, size: str, quality: str) -> Decimal:
    assert price.per_image_usd is not None
    return (price.per_image_usd * image_factor(price.image_size_factors, size)
            * image_factor(price.image_quality_factors, quality))


def token_quota(usage: Usage, price: Price, group_ratio: Decimal, quota_per_usd: int) -> int:
    """``quota_for`` with audio tokens at their own ratios (realtime).  Cached tokens are
    taken from the text part of the prompt first."""
    if not (usage.audio_prompt_tokens or usage.audio_completion_tokens):
        return quota_for(usage, price, group_ratio, quota_per_usd)
    uncached = usage.uncached_prompt_tokens
    audio_in = min(usage.audio_prompt_tokens, uncached)
    audio_out = min(usage.audio_completion_tokens, usage.completion_tokens)
    audio_in_ratio = price.audio_input_ratio if price.audio_input_ratio is not None else Decimal(1)
    audio_out_ratio = price.audio_output_ratio if price.audio_output_ratio is not None else price.completion_ratio
    units = (Decimal(uncached - audio_in) + Decimal(audio_in) * audio_in_ratio
             + Decimal(usage.completion_tokens - audio_out) * price.completion_ratio
             + Decimal(audio_out) * audio_out_ratio
             + Decimal(usage.cache_read_tokens) * price.cache_read_ratio
             + Decimal(usage.cache_write_tokens) * price.cache_write_ratio)
    return _ceil(group_ratio * price.model_ratio * units * Decimal(quota_per_usd) / BASE_QUOTA_PER_USD)


def units_quota(price: Price, units: Units, group_ratio: Decimal, quota_per_usd: int) -> int:
    """The cost of ``units`` under the model's basis (SPEC §5, extended to every basis:
    quota = ceil(group_ratio × units × USD per unit × quota_per_usd))."""
    basis = price.basis
    if basis == "call":
        return quota_for(Usage(), price, group_ratio, quota_per_usd)
    if basis == "image":
        usd_total = sum((image_usd(price, size, quality) for size, quality in units.images), Decimal(0))
        return _ceil(group_ratio * usd_total * quota_per_usd)
    if basis == "second":
        assert price.per_second_usd is not None
        return _ceil(group_ratio * (units.seconds or Decimal(0)) * price.per_second_usd * quota_per_usd)
    if basis == "char":
        assert price.per_char_usd is not None
        return _ceil(group_ratio * Decimal(units.chars or 0) * price.per_char_usd * quota_per_usd)
    return token_quota(units.usage or Usage(), price, group_ratio, quota_per_usd)


def units_hold(price: Price, units: Units, group_ratio: Decimal, quota_per_usd: int) -> int:
    """The hold for a request whose largest consumption is ``units``: token prompts at the
    dearest input rate, as ``hold_quota`` does for chat."""
    if price.basis == "token" and units.usage is not None and not (
            units.usage.audio_prompt_tokens or units.usage.audio_completion_tokens):
        return hold_quota(price, group_ratio, quota_per_usd, prompt_tokens=units.usage.prompt_tokens,
                          max_output_tokens=units.usage.completion_tokens)
    return units_quota(price, units, group_ratio, quota_per_usd)
