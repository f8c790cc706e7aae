"""Channel and key health: outlier ejection, Retry-After cool-downs and dead keys.

Everything here is in memory and per process except dead keys, which are persisted (the
operator sees them in ``relaykit channel list``) by the pipeline through the writer.

Ejection (RELIABILITY §5.4 rule 7): ``eject_after`` consecutive failures (connect
errors, timeouts, 5xx) eject a channel for ``eject_seconds``, doubling with each
ejection in a row up to ``eject_max_seconds``.  When the window ends the channel is
half-open: the next request probes it; success re-admits it, failure ejects it again for
twice as long.  A channel is never taken out of a plan when nothing healthy would be left
for the model: the caller then tries the least recently ejected channels anyway.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..domain import Channel


def fingerprint(key: str) -> str:
    """A stable, non-reversible name for an upstream key (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def mask(key: str) -> str:
    if not key:
        return "-"
    return f"{key[:3]}...{key[-4:]}" if len(key) >= 12 else "***"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    eject_after: int = 5
    eject_seconds: float = 30.0
    eject_max_seconds: float = 300.0


@dataclass
class _ChannelHealth:
    failures: int = 0            # consecutive
    ejections: int = 0           # ejections in a row (for doubling)
    ejected_until: float = 0.0
    cooldown_until: float = 0.0  # from an upstream Retry-After
    successes: int = 0
    total_failures: int = 0


@dataclass
class Health:
    settings: HealthSettings = field(default_factory=HealthSettings)
    clock: Callable[[], float] = time.monotonic
    _state: dict[str, _ChannelHealth] = field(default_factory=dict)

    def _of(self, name: str) -> _ChannelHealth:
        st = self._state.get(name)
        if st is None:
            st = self._state[name] = _ChannelHealth()
        return st

    def is_out(self, name: str) -> bool:
        st = self._state.get(name)
        if st is None:
            return False
        now = self.clock()
        return st.ejected_until > now or st.cooldown_until > now

    def order(self, plan: list[Channel]) -> list[Channel]:
        """The plan minus ejected/cooling channels; if that leaves nothing, all of them,
        soonest-back first (never strand a model)."""
        healthy = [c for c in plan if not self.is_out(c.name)]
        if healthy:
            return healthy
        return sorted(plan, key=lambda c: max(self._of(c.name).ejected_until, self._of(c.name).cooldown_until))

    def success(self, name: str) -> None:
        st = self._of(name)
        st.failures = 0
        st.ejections = 0
        st.ejected_until = 0.0
        st.successes += 1

    def failure(self, name: str) -> bool:
        """Count a failure; return True when it ejected the channel."""
        st = self._of(name)
        st.failures += 1
        st.total_failures += 1
        if st.failures < self.settings.eject_after or st.ejected_until > self.clock():
            return False  # requests already in flight when it was ejected do not eject it again
        st.ejections += 1
        seconds = min(self.settings.eject_seconds * (2 ** (st.ejections - 1)), self.settings.eject_max_seconds)
        st.ejected_until = self.clock() + seconds
        return True

    def cool_down(self, name: str, seconds: float) -> None:
        st = self._of(name)
        st.cooldown_until = max(st.cooldown_until, self.clock() + max(0.0, seconds))

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        now = self.clock()
        return {name: {"failures": st.failures, "ejections": st.ejections,
                       "ejected_for": max(0.0, st.ejected_until - now),
                       "cooling_for": max(0.0, st.cooldown_until - now)} for name, st in self._state.items()}
