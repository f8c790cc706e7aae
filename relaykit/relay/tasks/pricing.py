"""Task prices (SPEC §5): per call, held whole at submit.

    quota = ceil(group_ratio × per_call_usd × quota_per_usd)                 (Midjourney, Suno)
    quota = ceil(group_ratio × per_call_usd × max(1, seconds / 5) × quota_per_usd)   (video)

A video's ``per_call`` price is for a clip of up to 5 seconds; a 10-second clip costs
twice as much.  A Kling ``mode: pro`` request is priced under ``<model>-pro`` when the
operator priced that name (Kling charges more for pro), else under the model itself.
A model priced per second of output (``per_second``) is charged for the clip's seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal

from ...domain import Price
from ...errors import InvalidRequest

BASE_SECONDS = 5


def price_for(prices: Mapping[str, Price], model: str, mode: str | None) -> Price | None:
    if mode == "pro":
        pro = prices.get(f"{model}-pro")
        if pro is not None:
            return pro
    return prices.get(model)


def task_quota(price: Price, group_ratio: Decimal, quota_per_usd: int, seconds: int | None) -> int:
    if price.per_call_usd is not None:
        usd = price.per_call_usd
        if seconds and seconds > BASE_SECONDS:
            usd = usd * Decimal(seconds) / BASE_SECONDS
        return _ceil(group_ratio * usd * quota_per_usd)
    per_second = getattr(price, "per_second_usd", None)
    if isinstance(per_second, Decimal) and seconds:
        return _ceil(group_ratio * per_second * seconds * quota_per_usd)
    raise InvalidRequest(f"The model '{price.model}' is priced per token, but tasks are billed per call; "
                         "ask the operator to give it a per_call price.", code="model_not_priced")


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_CEILING))
