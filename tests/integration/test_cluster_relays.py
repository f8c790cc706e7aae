"""Two relaykit instances on one PostgreSQL and one Redis (issue 8's acceptance).

Each test starts two in-process relays (the same app factory ``serve`` uses, each with its
own store, writer thread, caches and Redis connection) on a PostgreSQL database and a Redis
key prefix of its own, in front of one fake OpenAI upstream that counts what reaches it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relaykit.server.cluster import CLUSTER
from relaykit.server.services import SERVICES
from relaykit.store import accounts, billing, cards
from tests.fakes import FakeOpenAIChat

from .cluster_support import (PrivateRedis, RedisTarget, pg_databases, pg_url, private_redis,  # noqa: F401
                              redis_target)
from .harness import UPSTREAM_KEY, Relay, start_relay, stop_relay

PER_CALL_QUOTA = 5000  # "fixed" costs $0.01 = 5000 quota units at 500 000 per USD
PASSWORD = "correct horse battery"


def cluster_config(pg: str, redis_url: str | None, prefix: str, upstream: str, card_key: Path, *,
                   extra: str = "") -> str:
    redis = f'redis: {{url: "{redis_url}", prefix: "{prefix}"}}' if redis_url else ""
    return f"""
database: {{url: "{pg}"}}
{redis}
accounts: {{card_key_file: "{card_key}"}}
groups:
  default: {{ratio: 1}}
models:
  fixed: {{per_call: 0.01}}
channels:
  - name: fake-openai
    type: openai
    base_url: {upstream}
    keys: ["{UPSTREAM_KEY}"]
    models: [fixed]
{extra}
"""


StartPair = Callable[..., Awaitable[tuple[Relay, Relay]]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAIChat]:
    up = FakeOpenAIChat(keys={UPSTREAM_KEY})
    await up.start()
    yield up
    await up.stop()


@pytest.fixture
async def pair(tmp_path: Path, pg_url: str, fake: FakeOpenAIChat) -> AsyncIterator[StartPair]:  # noqa: F811
    """Start instances A and B on one database; at the end both stop, no hold is left
    open and the audit passes."""
    started: list[Relay] = []

    async def start(redis_url: str | None, prefix: str = "relaykit", *, extra: str = "") -> tuple[Relay, Relay]:
        relays = []
        for name in ("a", "b"):
            d = tmp_path / name
            d.mkdir(exist_ok=True)
            cfg = d / "relaykit.yaml"
            cfg.write_text(cluster_config(pg_url, redis_url, prefix, fake.url, tmp_path / "cards.key", extra=extra),
                           encoding="utf-8")
            relay = await start_relay(cfg, jobs_tick=0.2)
            started.append(relay)
            relays.append(relay)
        return relays[0], relays[1]

    yield start
    for relay in started:
        await stop_relay(relay)
    if started:
        store = started[0].store
        assert store.tx(lambda t: t.Hold.select().count()) == 0, "a hold was left open"
        assert all(line.ok for line in store.tx(billing.audit)), "relaykit audit fails after this test"
    for relay in started:
        relay.store.close()


def _key(relay: Relay, user: str, *, quota: int, rpm: int | None = None) -> tuple[str, int]:
    def make(t: Any) -> tuple[str, int]:
        u = accounts.create_user(t, user, password_hash=accounts.hash_password(PASSWORD))
        if quota:
            billing.topup(t, user, quota)
        row, key = accounts.create_token(t, user_id=u.id, name="k", quota=None, expires_at=None, group=None,
                                         models=[], ips=[], rpm=rpm, tpm=None)
        return key, int(row.id)
    return relay.store.tx(make)


async def _chat(session: aiohttp.ClientSession, relay: Relay, key: str) -> int:
    async with session.post(relay.base + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                            json={"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}) as resp:
        await resp.read()
        return resp.status


async def _burst(relays: tuple[Relay, Relay], key: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(_chat(session, relays[i % 2], key) for i in range(n))))


async def _health(relay: Relay) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(relay.url + "/health") as resp:
        return dict(await resp.json())


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_200_requests_on_two_instances_forward_exactly_what_the_balance_covers(
        pair: StartPair, redis_target: RedisTarget, fake: FakeOpenAIChat) -> None:  # noqa: F811
    a, b = await pair(redis_target.url, redis_target.prefix)
    key, _ = _key(a, "alice", quota=50 * PER_CALL_QUOTA)
    statuses = await _burst((a, b), key, 200)
    assert statuses.count(200) == 50, sorted(set(statuses))
    assert len(fake.requests) == 50  # nothing unpaid reached the upstream
    assert set(statuses) == {200, 402}
    await a.settled(50)
    assert a.balance("alice") == 0
    assert a.audit_ok()


async def _login(session: aiohttp.ClientSession, relay: Relay, user: str) -> str:
    async with session.post(relay.url + "/api/user/login", json={"username": user, "password": PASSWORD}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["data"]["token"])


async def test_one_card_redeemed_on_both_instances_at_once_credits_once(
        pair: StartPair, redis_target: RedisTarget) -> None:  # noqa: F811
    a, b = await pair(redis_target.url, redis_target.prefix)
    _key(a, "carol", quota=0)
    settings = a.runner.app[SERVICES].settings
    card_key = cards.load_card_key(cards.card_key_path(settings))
    [code] = a.store.tx(lambda t: cards.issue(t, card_key, amount=12_345, count=1, prefix="RK", expires_at=None,
                                              batch="t"))
    async with aiohttp.ClientSession() as session:
        sessions = [await _login(session, a, "carol"), await _login(session, b, "carol")]

        async def redeem(i: int) -> int:
            relay = (a, b)[i % 2]
            async with session.post(relay.url + "/api/user/redeem", json={"key": code},
                                    headers={"Authorization": f"Bearer {sessions[i % 2]}"}) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(redeem(i) for i in range(20)))
    assert statuses.count(200) == 1 and statuses.count(409) == 19, statuses
    assert a.balance("carol") == 12_345
    assert [e["kind"] for e in a.ledger("carol")] == ["card"]


async def test_a_60_per_minute_limit_holds_across_both_instances(
        pair: StartPair, redis_target: RedisTarget, fake: FakeOpenAIChat) -> None:  # noqa: F811
    a, b = await pair(redis_target.url, redis_target.prefix)
    key, _ = _key(a, "dave", quota=10**9, rpm=60)
    statuses = await _burst((a, b), key, 100)
    assert statuses.count(200) == 60 and statuses.count(429) == 40
    assert len(fake.requests) == 60
    async with aiohttp.ClientSession() as session:
        async with session.post(b.base + "/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"model": "fixed", "messages": [{"role": "user", "content": "x"}]}) as resp:
            assert resp.status == 429
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert resp.headers["x-ratelimit-limit-requests"] == "60"
    await a.settled(60)
    shared = a.runner.app[CLUSTER].limiter
    assert shared is not None and shared.local_admissions == 0  # every admission went through Redis


async def test_a_token_revoked_on_one_instance_is_refused_by_the_other_within_a_second(
        pair: StartPair, redis_target: RedisTarget) -> None:  # noqa: F811
    a, b = await pair(redis_target.url, redis_target.prefix)
    key, token_id = _key(a, "erin", quota=10**9)
    async with aiohttp.ClientSession() as session:
        assert await _chat(session, b, key) == 200
        login = await _login(session, a, "erin")
        # B's own polling is turned off here: only Redis can tell it in time
        b.store.cache._interval = 60.0  # noqa: SLF001
        b.store.cache.wake()
        await asyncio.sleep(0.05)
        async with session.delete(f"{a.url}/api/token/{token_id}",
                                  headers={"Authorization": f"Bearer {login}"}) as resp:
            assert resp.status == 200, await resp.text()

        async def refused() -> bool:
            return await _chat(session, b, key) == 401

        took = await _until(refused, 1.0, "B refuses the revoked token")
    print(f"revocation on A refused by B after {took * 1000:.0f} ms")
    await a.settled(1)


async def test_redis_stopped_mid_run_then_restarted(pair: StartPair, private_redis: PrivateRedis,  # noqa: F811
                                                    fake: FakeOpenAIChat) -> None:
    a, b = await pair(private_redis.url, "outage")
    key, _ = _key(a, "fred", quota=10**9, rpm=10)
    assert await _burst((a, b), key, 8) == [200] * 8  # shared window: 8 of 10 used

    private_redis.stop()

    async def degraded() -> bool:
        return [(await _health(r))["status"] for r in (a, b)] == ["degraded", "degraded"]

    await _until(degraded, 3.0, "both instances report Redis down")
    health = await _health(a)
    assert health["redis"]["ok"] is False and health["redis"]["limits"] == "per-instance"
    assert health["database"]["ok"] is True
    # both keep serving, each with its own window of 10 (the shared count is not reachable)
    statuses = [await _burst((a, a), key, 12), await _burst((b, b), key, 3)]
    assert statuses[0].count(200) == 10 and statuses[0].count(429) == 2
    assert statuses[1] == [200] * 3

    private_redis.start()

    async def healthy() -> bool:
        return [(await _health(r))["status"] for r in (a, b)] == ["ok", "ok"]

    await _until(healthy, 3.0, "both instances see Redis again")
    # shared limits resume: the restarted Redis is empty, so 10 more across both, not 20
    statuses2 = await _burst((a, b), key, 16)
    assert statuses2.count(200) == 10 and statuses2.count(429) == 6
    await a.settled(8 + 10 + 3 + 10)
    assert len(fake.requests) == 31


async def test_background_jobs_run_on_one_instance_and_move_when_it_stops(
        pair: StartPair, redis_target: RedisTarget) -> None:  # noqa: F811
    a, b = await pair(redis_target.url, redis_target.prefix)
    jobs = (a.runner.app[CLUSTER].jobs, b.runner.app[CLUSTER].jobs)

    async def one_leader() -> bool:
        return sum(j.is_leader for j in jobs) == 1

    await _until(one_leader, 3.0, "one of the two leads")
    await asyncio.sleep(0.5)  # several ticks later: still exactly one
    assert sum(j.is_leader for j in jobs) == 1
    leader, other = (a, jobs[1]) if jobs[0].is_leader else (b, jobs[0])
    assert (await _health(leader))["jobs"]["leader"] is True
    assert other.status()["jobs"]["release-stale-holds"]["runs"] == 0
    await stop_relay(leader)

    async def taken_over() -> bool:
        return other.is_leader

    await _until(taken_over, 3.0, "the other instance takes the jobs over")
    await _until(lambda: _ran(other, "release-stale-holds"), 3.0, "the new leader runs the jobs")


async def _ran(jobs: Any, name: str) -> bool:
    return bool(jobs.status()["jobs"][name]["runs"] > 0)


async def test_a_channel_ejected_on_one_instance_is_out_on_the_other(
        pair: StartPair, redis_target: RedisTarget, fake: FakeOpenAIChat) -> None:  # noqa: F811
    a, b = await pair(redis_target.url, redis_target.prefix,
                      extra="health: {eject_after: 2, eject_seconds: 30}\nretry: {max_attempts: 1}")
    key, _ = _key(a, "gina", quota=10**9)
    fake.mode = "status:500"
    assert await _burst((a, a), key, 2) == [502, 502]  # the second failure ejects it on A
    assert a.runner.app[SERVICES].pipeline.health.is_out("fake-openai")

    async def out_on_b() -> bool:
        return b.runner.app[SERVICES].pipeline.health.is_out("fake-openai")

    await _until(out_on_b, 1.0, "B learns of the ejection")
    channel = (await _health(b))["channels"][0]
    assert channel["name"] == "fake-openai" and channel["state"] == "ejected" and channel["ejected_for"] > 20
    await a.settled(2)
