"""Rate limits: requests and tokens per minute (sliding window) and concurrent requests,
per relay token and per customer.

The windows are kept in this process's memory (several instances share them through
Redis: relay/redis_limits.py, behind the same ``admit_async``/``Lease`` interface); a
refused request gets 429 with ``Retry-After`` and the ``x-ratelimit-*`` headers OpenAI
clients read.  Tokens are counted when a request
settles, so a burst admitted together can overshoot a TPM limit by those requests.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import RateLimited
from ..settings import LimitSettings
from .auth import Caller

WINDOW = 60.0


@dataclass
class _Window:
    events: deque[tuple[float, int]] = field(default_factory=deque)
    total: int = 0

    def trim(self, now: float) -> None:
        while self.events and self.events[0][0] <= now - WINDOW:
            _, w = self.events.popleft()
            self.total -= w

    def add(self, now: float, weight: int) -> None:
        self.events.append((now, weight))
        self.total += weight

    def reset_in(self, now: float) -> float:
        return max(0.0, self.events[0][0] + WINDOW - now) if self.events else 0.0


@dataclass(frozen=True, slots=True)
class _Rule:
    scope: str           # "token" or "user"
    key: int
    rpm: int | None
    tpm: int | None
    concurrency: int | None


class Lease:
    """Admission of one request; ``release`` exactly once when it has settled."""

    __slots__ = ("_limiter", "_rules", "_done")

    def __init__(self, limiter: Limiter, rules: list[_Rule]) -> None:
        self._limiter = limiter
        self._rules = rules
        self._done = False

    def release(self, tokens: int = 0) -> None:
        if self._done:
            return
        self._done = True
        self._limiter._release(self._rules, tokens)  # noqa: SLF001 - the limiter's own lease

    @property
    def headers(self) -> dict[str, str]:
        return self._limiter.headers_for(self._rules)


def _dur(seconds: float) -> str:
    return f"{max(0, math.ceil(seconds))}s"


Tightest = tuple[int, int, float]  # (remaining, limit, seconds until reset)


def ratelimit_headers(requests: Tightest | None, tokens: Tightest | None) -> dict[str, str]:
    """OpenAI's x-ratelimit-* headers for the tightest request and token limits."""
    out: dict[str, str] = {}
    for kind, best in (("requests", requests), ("tokens", tokens)):
        if best:
            out[f"x-ratelimit-limit-{kind}"] = str(best[1])
            out[f"x-ratelimit-remaining-{kind}"] = str(max(0, best[0]))
            out[f"x-ratelimit-reset-{kind}"] = _dur(best[2])
    return out


class Limiter:
    def __init__(self, settings: LimitSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._requests: dict[tuple[str, int], _Window] = {}
        self._tokens: dict[tuple[str, int], _Window] = {}
        self._active: dict[tuple[str, int], int] = {}

    def _rules(self, caller: Caller) -> list[_Rule]:
        s = self.settings
        rules = []
        if caller.token.rpm or caller.token.tpm or s.token_concurrency:
            rules.append(_Rule("token", caller.token.id, caller.token.rpm, caller.token.tpm, s.token_concurrency))
        if s.user_rpm or s.user_tpm or s.user_concurrency:
            rules.append(_Rule("user", caller.user.id, s.user_rpm, s.user_tpm, s.user_concurrency))
        return rules

    def admit(self, caller: Caller) -> Lease:
        rules = self._rules(caller)
        if not rules:
            return Lease(self, [])
        now = self._clock()
        for rule in rules:
            k = (rule.scope, rule.key)
            who = "API key" if rule.scope == "token" else "account"
            if rule.concurrency and self._active.get(k, 0) >= rule.concurrency:
                raise self._refuse(rules, f"This {who} already has {rule.concurrency} requests in flight; "
                                          "wait for one to finish.", 1.0)
            if rule.rpm:
                w = self._requests.setdefault(k, _Window())
                w.trim(now)
                if w.total >= rule.rpm:
                    raise self._refuse(rules, f"This {who} is limited to {rule.rpm} requests per minute.",
                                       w.reset_in(now))
            if rule.tpm:
                w = self._tokens.setdefault(k, _Window())
                w.trim(now)
                if w.total >= rule.tpm:
                    raise self._refuse(rules, f"This {who} is limited to {rule.tpm} tokens per minute.",
                                       w.reset_in(now))
        for rule in rules:
            k = (rule.scope, rule.key)
            if rule.rpm:
                self._requests.setdefault(k, _Window()).add(now, 1)
            self._active[k] = self._active.get(k, 0) + 1
        return Lease(self, rules)

    async def admit_async(self, caller: Caller) -> Lease:
        """The pipeline's entry point; the shared (Redis) limiter needs a round trip here."""
        return self.admit(caller)

    def _refuse(self, rules: list[_Rule], message: str, retry_in: float) -> RateLimited:
        headers = self.headers_for(rules)
        headers["Retry-After"] = str(max(1, math.ceil(retry_in)))
        return RateLimited(message, headers=headers)

    def _release(self, rules: list[_Rule], tokens: int) -> None:
        now = self._clock()
        for rule in rules:
            k = (rule.scope, rule.key)
            self._active[k] = max(0, self._active.get(k, 0) - 1)
            if not self._active[k]:
                del self._active[k]
            if rule.tpm and tokens:
                self._tokens.setdefault(k, _Window()).add(now, tokens)

    def headers_for(self, rules: list[_Rule]) -> dict[str, str]:
        """The tightest of the applicable limits, in OpenAI's header names."""
        now = self._clock()
        out: dict[str, str] = {}
        best_req: tuple[int, int, float] | None = None
        best_tok: tuple[int, int, float] | None = None
        for rule in rules:
            k = (rule.scope, rule.key)
            if rule.rpm:
                w = self._requests.get(k) or _Window()
                w.trim(now)
                cand = (rule.rpm - w.total, rule.rpm, w.reset_in(now))
                best_req = cand if best_req is None or cand[0] < best_req[0] else best_req
            if rule.tpm:
                w = self._tokens.get(k) or _Window()
                w.trim(now)
                cand = (rule.tpm - w.total, rule.tpm, w.reset_in(now))
                best_tok = cand if best_tok is None or cand[0] < best_tok[0] else best_tok
        out.update(ratelimit_headers(best_req, best_tok))
        return out
