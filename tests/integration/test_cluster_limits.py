"""The Redis rate limiter on its own: the Lua script's windows (requests, tokens, requests
in flight), shared by two limiters as by two instances, and the fallback to per-instance
windows when Redis is not there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from relaykit.domain import TokenInfo, UserInfo
from relaykit.errors import RateLimited
from relaykit.relay.auth import Caller
from relaykit.relay.limits import Lease
from relaykit.relay.redis_limits import SharedLease, SharedLimiter
from relaykit.relay.shared import Shared
from relaykit.settings import LimitSettings

from .cluster_support import RedisTarget, free_port, redis_target  # noqa: F401  (fixtures)


def caller(*, rpm: int | None = None, tpm: int | None = None, token_id: int = 1) -> Caller:
    token = TokenInfo(id=token_id, user_id=7, name="t", status="active", expires_at=None, unlimited=True,
                      group=None, models=(), ips=(), rpm=rpm, tpm=tpm)
    return Caller(token, UserInfo(7, "u", "default", "active", "customer"))


@pytest.fixture
async def two(redis_target: RedisTarget) -> AsyncIterator[tuple[SharedLimiter, SharedLimiter]]:  # noqa: F811
    """Two limiters with their own Redis connections and one key prefix: two instances."""
    shared = [Shared(redis_target.url, redis_target.prefix) for _ in range(2)]
    for s in shared:
        await s.start()
    yield SharedLimiter(LimitSettings(), shared[0]), SharedLimiter(LimitSettings(), shared[1])
    for s in shared:
        await s.stop()


async def _admit(lim: SharedLimiter, c: Caller) -> Lease | None:
    try:
        return await lim.admit_async(c)
    except RateLimited:
        return None


async def test_requests_per_minute_are_exact_across_two_limiters(two: tuple[SharedLimiter, SharedLimiter]) -> None:
    c = caller(rpm=20)
    leases = await asyncio.gather(*(_admit(two[i % 2], c) for i in range(50)))
    admitted = [lease for lease in leases if lease is not None]
    assert len(admitted) == 20 and all(isinstance(x, SharedLease) for x in admitted)
    with pytest.raises(RateLimited) as refused:
        await two[0].admit_async(c)
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert 55 <= int(refused.value.headers["Retry-After"]) <= 60
    assert two[0].local_admissions == two[1].local_admissions == 0
    for lease in admitted:
        lease.release()


async def test_tokens_per_minute_count_what_was_settled(two: tuple[SharedLimiter, SharedLimiter]) -> None:
    c = caller(tpm=1000, token_id=2)
    first = await two[0].admit_async(c)
    assert first.headers["x-ratelimit-remaining-tokens"] == "1000"
    first.release(600)
    second = await two[1].admit_async(c)
    second.release(500)
    await asyncio.sleep(0.1)  # releases travel in the background
    with pytest.raises(RateLimited, match="1000 tokens per minute"):
        await two[0].admit_async(c)


async def test_requests_in_flight_are_limited_and_freed_on_release(two: tuple[SharedLimiter, SharedLimiter]) -> None:
    for lim in two:
        lim.settings = LimitSettings(token_concurrency=3)
    c = caller(token_id=3)
    leases = [await two[i % 2].admit_async(c) for i in range(3)]
    with pytest.raises(RateLimited, match="3 requests in flight"):
        await two[1].admit_async(c)
    leases[0].release()
    leases[0].release()  # twice is once
    await asyncio.sleep(0.1)
    leases.append(await two[1].admit_async(c))
    with pytest.raises(RateLimited):
        await two[0].admit_async(c)
    for lease in leases[1:]:
        lease.release()


async def test_without_redis_each_instance_limits_alone_and_says_so() -> None:
    shared = Shared(f"redis://127.0.0.1:{free_port()}/0", "nowhere")
    await shared.start()
    try:
        assert not shared.up and shared.status()["limits"] == "per-instance"
        lim = SharedLimiter(LimitSettings(), shared)
        c = caller(rpm=3, token_id=4)
        leases = [await lim.admit_async(c) for _ in range(3)]
        assert not any(isinstance(x, SharedLease) for x in leases)
        with pytest.raises(RateLimited):
            await lim.admit_async(c)
        assert lim.local_admissions == 4  # decided here, the refusal included
    finally:
        await shared.stop()


async def test_tokens_leave_the_window_and_the_running_sum_with_them(
        two: tuple[SharedLimiter, SharedLimiter], monkeypatch: pytest.MonkeyPatch) -> None:
    from relaykit.relay import redis_limits
    monkeypatch.setattr(redis_limits, "WINDOW", 0.4)  # a 400 ms "minute"
    c = caller(tpm=100, token_id=5)
    (await two[0].admit_async(c)).release(80)
    (await two[1].admit_async(c)).release(30)
    await asyncio.sleep(0.1)
    with pytest.raises(RateLimited):
        await two[0].admit_async(c)
    await asyncio.sleep(0.45)  # both settlements have left the window
    lease = await two[1].admit_async(c)
    assert lease.headers["x-ratelimit-remaining-tokens"] == "100"
    lease.release(60)
    await asyncio.sleep(0.1)
    assert (await two[0].admit_async(c)).headers["x-ratelimit-remaining-tokens"] == "40"
