"""Rate limits shared by every instance: the same rules as relay/limits.py, with the windows
in Redis (RELIABILITY §3.4: Kong's ``redis`` policy, not its diverging ``local`` one).

Admission is one Lua script, so Redis runs the check and the record as one step: with any
number of instances, no more than ``rpm`` requests are admitted in any 60 s window.  The
windows are exact sliding logs (a sorted set per token or customer, scored by Redis's own
clock, so the instances' clocks need not agree):

* requests: one member per admitted request;
* tokens: one member ``<lease>:<tokens>`` per settled request, and their running sum (each
  member is read once more, when it leaves the window: admission stays O(log n));
* in flight: one member per open lease, scored by when it expires (``LEASE_TTL``), so the
  leases of an instance that died stop counting by themselves.

Redis down (or slower than ``shared.OP_TIMEOUT``): the request is admitted by the local,
in-memory windows of this instance instead (the class extends ``Limiter``, whose windows
are exactly that), and ``Shared`` logs it and shows it in ``/health``.  A lease is released
where it was admitted.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import RateLimited
from ..settings import LimitSettings
from .auth import Caller
from .limits import WINDOW, Lease, Limiter, _dur, _Rule, ratelimit_headers
from .shared import RedisUnavailable, Shared

LEASE_TTL = 600.0  # seconds an in-flight lease counts at most (a crashed instance's leases expire)

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, ttl, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local n = #KEYS / 4
local info = {}
for i = 1, n do
  local rk, tk, sk, ck = KEYS[4*i-3], KEYS[4*i-2], KEYS[4*i-1], KEYS[4*i]
  local rpm, tpm, conc = tonumber(ARGV[3*i+1]), tonumber(ARGV[3*i+2]), tonumber(ARGV[3*i+3])
  local used_r, reset_r, used_t, reset_t = 0, 0, 0, 0
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', ck, '-inf', now)
    if redis.call('ZCARD', ck) >= conc then return {0, i, 1, 1000} end
  end
  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - window)
    used_r = redis.call('ZCARD', rk)
    if used_r > 0 then
      reset_r = tonumber(redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')[2]) + window - now
    end
    if used_r >= rpm then return {0, i, 2, reset_r} end
  end
  if tpm > 0 then
    -- the running sum loses what leaves the window: each entry is read once, when it leaves
    local gone = redis.call('ZRANGEBYSCORE', tk, '-inf', now - window)
    if #gone > 0 then
      local drop = 0
      for _, m in ipairs(gone) do drop = drop + tonumber(string.match(m, '(%d+)$')) end
      redis.call('ZREMRANGEBYSCORE', tk, '-inf', now - window)
      redis.call('DECRBY', sk, drop)
    end
    local first = redis.call('ZRANGE', tk, 0, 0, 'WITHSCORES')
    if #first == 0 then
      redis.call('DEL', sk)
    else
      used_t = math.max(0, tonumber(redis.call('GET', sk) or '0'))
      reset_t = tonumber(first[2]) + window - now
    end
    if used_t >= tpm then return {0, i, 3, reset_t} end
  end
  info[4*i-3], info[4*i-2], info[4*i-1], info[4*i] = used_r, reset_r, used_t, reset_t
end
for i = 1, n do
  local rk, ck = KEYS[4*i-3], KEYS[4*i]
  if tonumber(ARGV[3*i+1]) > 0 then
    redis.call('ZADD', rk, now, id)
    redis.call('PEXPIRE', rk, window + 1000)
    info[4*i-3] = info[4*i-3] + 1
    if info[4*i-2] == 0 then info[4*i-2] = window end
  end
  if tonumber(ARGV[3*i+3]) > 0 then
    redis.call('ZADD', ck, now + ttl, id)
    redis.call('PEXPIRE', ck, ttl + 1000)
  end
end
return {1, unpack(info)}
"""

_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, id, tokens = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
for i = 1, #KEYS / 3 do
  local tk, sk, ck = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  redis.call('ZREM', ck, id)
  if tokens > 0 and tonumber(ARGV[3+i]) > 0 then
    redis.call('ZADD', tk, now, id .. ':' .. tokens)
    redis.call('INCRBY', sk, tokens)
    redis.call('PEXPIRE', tk, window + 1000)
    redis.call('PEXPIRE', sk, window + 1000)
  end
end
return 1
"""


class SharedLease(Lease):
    """A lease admitted by Redis; released there (in the background) exactly once."""

    __slots__ = ("_shared", "_id", "_fixed_headers")

    def __init__(self, limiter: SharedLimiter, rules: list[_Rule], lease_id: str, headers: dict[str, str]) -> None:
        super().__init__(limiter, rules)
        self._shared = limiter
        self._id = lease_id
        self._fixed_headers = headers

    def release(self, tokens: int = 0) -> None:
        if self._done:
            return
        self._done = True
        self._shared.release_later(self._rules, self._id, tokens)

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._fixed_headers)


class SharedLimiter(Limiter):
    """A ``Limiter`` whose windows live in Redis; its own in-memory windows (the inherited
    ones) are the per-instance fallback while Redis is away."""

    def __init__(self, settings: LimitSettings, shared: Shared,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings, clock)
        self._shared = shared
        self._admit_script: Any = None
        self._release_script: Any = None
        self.shared_admissions = 0
        self.local_admissions = 0

    def _keys(self, rule: _Rule) -> tuple[str, str, str, str]:
        base = self._shared.key("rl", rule.scope, rule.key)
        return f"{base}:req", f"{base}:tok", f"{base}:toksum", f"{base}:run"

    async def admit_async(self, caller: Caller) -> Lease:
        rules = self._rules(caller)
        if not rules:
            return Lease(self, [])
        if not self._shared.up:
            self.local_admissions += 1
            return self.admit(caller)
        lease_id = uuid.uuid4().hex
        keys = [k for rule in rules for k in self._keys(rule)]
        args: list[Any] = [int(WINDOW * 1000), int(LEASE_TTL * 1000), lease_id]
        for rule in rules:
            args += [rule.rpm or 0, rule.tpm or 0, rule.concurrency or 0]

        async def run(r: Any) -> Any:
            if self._admit_script is None:
                self._admit_script = r.register_script(_ADMIT)
            return await self._admit_script(keys=keys, args=args)

        try:
            got = await self._shared.call(run)
        except RedisUnavailable:
            self.local_admissions += 1
            return self.admit(caller)
        got = [int(x) for x in got]
        if got[0] == 0:
            raise self._refusal(rules[got[1] - 1], got[2], got[3] / 1000)
        self.shared_admissions += 1
        return SharedLease(self, rules, lease_id, self._headers(rules, got[1:]))

    def release_later(self, rules: list[_Rule], lease_id: str, tokens: int) -> None:
        keys = [k for rule in rules for k in self._keys(rule)[1:]]  # tokens, their sum, in flight
        args: list[Any] = [int(WINDOW * 1000), lease_id, max(0, int(tokens))]
        args += [rule.tpm or 0 for rule in rules]

        async def run(r: Any) -> Any:
            if self._release_script is None:
                self._release_script = r.register_script(_RELEASE)
            return await self._release_script(keys=keys, args=args)

        async def release() -> None:
            try:
                await self._shared.call(run)
            except RedisUnavailable:
                pass  # the in-flight member expires by itself (LEASE_TTL)

        self._shared.spawn(release())

    @staticmethod
    def _refusal(rule: _Rule, what: int, retry_in: float) -> RateLimited:
        who = "API key" if rule.scope == "token" else "account"
        headers: dict[str, str] = {}
        if what == 1:
            message = f"This {who} already has {rule.concurrency} requests in flight; wait for one to finish."
        elif what == 2:
            message = f"This {who} is limited to {rule.rpm} requests per minute."
            headers = {"x-ratelimit-limit-requests": str(rule.rpm), "x-ratelimit-remaining-requests": "0",
                       "x-ratelimit-reset-requests": _dur(retry_in)}
        else:
            message = f"This {who} is limited to {rule.tpm} tokens per minute."
            headers = {"x-ratelimit-limit-tokens": str(rule.tpm), "x-ratelimit-remaining-tokens": "0",
                       "x-ratelimit-reset-tokens": _dur(retry_in)}
        headers["Retry-After"] = str(max(1, math.ceil(retry_in)))
        return RateLimited(message, headers=headers)

    @staticmethod
    def _headers(rules: list[_Rule], info: list[int]) -> dict[str, str]:
        """The tightest of the applicable limits, in OpenAI's header names (as Limiter does)."""
        best_req: tuple[int, int, float] | None = None
        best_tok: tuple[int, int, float] | None = None
        for i, rule in enumerate(rules):
            used_r, reset_r, used_t, reset_t = info[4 * i:4 * i + 4]
            if rule.rpm:
                cand = (rule.rpm - used_r, rule.rpm, reset_r / 1000)
                best_req = cand if best_req is None or cand[0] < best_req[0] else best_req
            if rule.tpm:
                cand = (rule.tpm - used_t, rule.tpm, reset_t / 1000)
                best_tok = cand if best_tok is None or cand[0] < best_tok[0] else best_tok
        return ratelimit_headers(best_req, best_tok)
