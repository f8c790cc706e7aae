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
