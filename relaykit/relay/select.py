"""Channel selection (SPEC: token's group -> channels serving the model -> highest
priority tier -> weighted random) and upstream key rotation.

The router is rebuilt from settings (start, SIGHUP) and told which channels the operator
disabled at run time; everything it answers comes from memory.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from collections import defaultdict

from ..domain import Channel
from .channels import kind_for


class Router:
    def __init__(self, channels: tuple[Channel, ...], rng: random.Random | None = None,
                 disabled: Callable[[], frozenset[str]] = frozenset) -> None:
        self._rng = rng or random.Random()
        self._channels = tuple(c for c in channels if kind_for(c.type) is not None)
        self._disabled = disabled
        self._key_turn: dict[str, int] = defaultdict(int)
        index: dict[tuple[str, str], list[Channel]] = defaultdict(list)
        for ch in self._channels:
            for group in ch.groups:
                for model in ch.client_models():
                    index[(group, model)].append(ch)
        self._index = dict(index)
        self._models = frozenset(m for (_, m) in self._index)

    @property
    def disabled(self) -> frozenset[str]:
        """Channels the operator disabled at run time (``relaykit channel disable``)."""
        return self._disabled()

    def usable(self, ch: Channel) -> bool:
        return ch.enabled and ch.name not in self.disabled

    @property
    def channels(self) -> tuple[Channel, ...]:
        return self._channels

    def models_for(self, group: str) -> list[str]:
        disabled = self.disabled
        return sorted({m for (g, m), chans in self._index.items()
                       if g == group and any(c.enabled and c.name not in disabled for c in chans)})

    def serves_anywhere(self, model: str) -> bool:
        return model in self._models

    def plan(self, group: str, model: str) -> list[Channel]:
        """Channels to try in order: tiers by descending priority, weighted shuffle inside."""
        disabled = self.disabled
        chans = [c for c in self._index.get((group, model), ()) if c.enabled and c.name not in disabled]
        if len(chans) == 1:  # the common case: nothing to order (weight 0 means "never")
            return chans if chans[0].weight > 0 else []
        tiers: dict[int, list[Channel]] = defaultdict(list)
        for c in chans:
            tiers[c.priority].append(c)
        order: list[Channel] = []
        for prio in sorted(tiers, reverse=True):
            order.extend(self._weighted_shuffle(tiers[prio]))
        return order

    def _weighted_shuffle(self, chans: list[Channel]) -> list[Channel]:
        pool = [c for c in chans if c.weight > 0]
        out: list[Channel] = []
        while pool:
            total = sum(c.weight for c in pool)
            pick = self._rng.uniform(0, total)
            acc = 0.0
            for i, c in enumerate(pool):
                acc += c.weight
                if pick <= acc:
                    out.append(pool.pop(i))
                    break
            else:
                out.append(pool.pop())
        out.extend(c for c in chans if c.weight <= 0)
        return out

    def keys_in_turn(self, ch: Channel, dead: frozenset[str] | set[str] = frozenset(),
                     fingerprint: Callable[[str], str] = str) -> list[str]:
        """The channel's live keys, starting at the next one in rotation."""
        if not ch.keys:
            return [""]
        turn = self._key_turn[ch.name]
        self._key_turn[ch.name] = turn + 1
        n = len(ch.keys)
        ordered = [ch.keys[(turn + i) % n] for i in range(n)]
        if not dead:  # the usual case: no key to hash and look up
            return ordered
        return [k for k in ordered if fingerprint(k) not in dead]

    def next_key(self, ch: Channel) -> str:
        keys = self.keys_in_turn(ch)
        return keys[0] if keys else ""
