"""The billing formula of SPEC §5 and the hold estimate."""

from __future__ import annotations

from decimal import Decimal

from relaykit.domain import Price, Usage
from relaykit.relay.meter import estimate_tokens
from relaykit.relay.pricing import hold_quota, quota_for

D = Decimal


def test_ratio_one_is_two_dollars_per_million_prompt_tokens() -> None:
    price = Price("m", model_ratio=D(1))
    assert quota_for(Usage(prompt_tokens=1_000_000), price, D(1), 500_000) == 1_000_000  # = $2


def test_group_and_completion_ratio_multiply_and_round_up() -> None:
    price = Price("m", model_ratio=D("0.075"), completion_ratio=D(4))
    # 0.3 * 0.075 * (13 + 7 * 4) = 0.9225 -> 1
    assert quota_for(Usage(prompt_tokens=13, completion_tokens=7), price, D("0.3"), 500_000) == 1
    # 0.3 * 0.075 * (1000 + 500 * 4) = 67.5 -> 68
    assert quota_for(Usage(prompt_tokens=1000, completion_tokens=500), price, D("0.3"), 500_000) == 68


def test_cache_tokens_leave_the_prompt_and_take_their_own_ratio() -> None:
    price = Price("m", model_ratio=D("1.25"), completion_ratio=D(4), cache_read_ratio=D("0.5"),
                  cache_write_ratio=D("1.25"))
    usage = Usage(prompt_tokens=1000, completion_tokens=10, cache_read_tokens=600, cache_write_tokens=100)
    # 1.25 * (300 + 40 + 300 + 125) = 956.25 -> 957
    assert quota_for(usage, price, D(1), 500_000) == 957


def test_per_call_price_ignores_tokens() -> None:
    price = Price("dall-e-3", per_call_usd=D("0.04"))
    assert quota_for(Usage(prompt_tokens=99, completion_tokens=99), price, D("0.5"), 500_000) == 10_000


def test_quota_per_usd_keeps_dollar_prices_true() -> None:
    price = Price("m", model_ratio=D(1))
    # at 1 000 000 quota per dollar, $2 per 1M tokens is 2 quota per token
    assert quota_for(Usage(prompt_tokens=10), price, D(1), 1_000_000) == 20


def test_hold_covers_the_largest_possible_cost() -> None:
    price = Price("m", model_ratio=D("1.25"), completion_ratio=D(4), cache_read_ratio=D("0.5"),
                  cache_write_ratio=D("1.25"))
    hold = hold_quota(price, D(1), 500_000, prompt_tokens=100, max_output_tokens=50)
    worst = quota_for(Usage(prompt_tokens=100, completion_tokens=50, cache_write_tokens=100), price, D(1), 500_000)
    assert hold >= worst
    assert hold == 407  # 1.25 * (100 * 1.25 + 50 * 4) = 406.25


def test_estimator_counts_ascii_by_four_and_other_characters_one_each() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好") == 2
    assert estimate_tokens("hi 你好") == 3
