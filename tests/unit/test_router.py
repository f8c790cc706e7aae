"""Channel selection: group -> model -> highest priority tier -> weighted random."""

from __future__ import annotations

import random
from collections import Counter

from relaykit.domain import Channel
from relaykit.relay.select import Router


def ch(name: str, *, priority: int = 0, weight: int = 1, groups: tuple[str, ...] = ("default",),
       models: tuple[str, ...] = ("m",), enabled: bool = True) -> Channel:
    return Channel(name=name, type="openai", base_url="http://x", keys=("k1", "k2"), models=models,
                   groups=groups, priority=priority, weight=weight, enabled=enabled)


def test_highest_priority_tier_first_then_lower_tiers() -> None:
    r = Router((ch("low", priority=1), ch("high-a", priority=10), ch("high-b", priority=10)), random.Random(1))
    plan = [c.name for c in r.plan("default", "m")]
    assert set(plan[:2]) == {"high-a", "high-b"} and plan[2] == "low"


def test_weights_share_the_first_pick() -> None:
    r = Router((ch("a", weight=3), ch("b", weight=1)), random.Random(42))
    firsts = Counter(r.plan("default", "m")[0].name for _ in range(4000))
    assert 0.70 < firsts["a"] / 4000 < 0.80


def test_groups_models_and_disabled_channels_filter() -> None:
    r = Router((ch("vip-only", groups=("vip",)), ch("off", enabled=False), ch("other", models=("n",))))
    assert r.plan("default", "m") == []
    assert [c.name for c in r.plan("vip", "m")] == ["vip-only"]
    r._disabled = lambda: frozenset({"vip-only"})  # what the cache reports after a CLI disable
    assert r.plan("vip", "m") == []
    assert r.models_for("default") == ["n"]


def test_keys_rotate() -> None:
    r = Router((ch("a"),))
    c = r.plan("default", "m")[0]
    assert [r.next_key(c) for _ in range(3)] == ["k1", "k2", "k1"]


def test_model_map_names_are_served() -> None:
    mapped = Channel(name="a", type="openai", base_url="http://x", keys=("k",), models=("gpt-4o",),
                     model_map=(("gpt-4", "gpt-4o"),))
    r = Router((mapped,))
    assert r.plan("default", "gpt-4")[0].upstream_model("gpt-4") == "gpt-4o"
    assert r.models_for("default") == ["gpt-4", "gpt-4o"]
