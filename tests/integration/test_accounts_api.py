"""The self-service API against a real server: login and sessions, registration, check-in,
card redemption, request logs and the usage endpoints for relay tokens."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from functools import lru_cache

import aiohttp
import pytest

from relaykit.cli.app import main
from relaykit.server.api_auth import ACCOUNTS
from relaykit.store import accounts

from .accounts_support import ACCOUNTS_CONFIG, PASSWORD, USD, Api, customer, issue_cards, session_for
from .conftest import StartRelay
from .harness import Relay


@lru_cache(maxsize=1)
def password_hash() -> str:
    return accounts.hash_password(PASSWORD)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def started(relay_factory: StartRelay, http: aiohttp.ClientSession, config: str = ACCOUNTS_CONFIG
                  ) -> tuple[Relay, Api]:
    relay = await relay_factory(config)
    return relay, Api(http, relay)


# --------------------------------------------------------------------------- login and sessions

async def test_login_gives_an_expiring_session_and_self_shows_the_balance(relay_factory: StartRelay,
                                                                         http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", usd=2.5, password_hash=password_hash(), group="vip")
    a = await api.call("POST", "/api/user/login", json={"username": "alice", "password": PASSWORD})
    assert a.status == 200 and a.body["success"] is True
    token = a.data["token"]
    assert token.startswith("rks-") and len(token) > 40
    assert abs(a.data["expires_at"] - (time.time() + 86400)) < 60  # accounts.session_days: 1
    me = await api.call("GET", "/api/user/self", token=token)
    assert me.status == 200
    assert me.data["username"] == "alice" and me.data["group"] == "vip" and me.data["role"] == "customer"
    assert me.data["quota"] == int(2.5 * USD) and me.data["usd"] == 2.5
    assert me.data["checkin_enabled"] is True
    # only the hash is stored
    stored = relay.store.tx(lambda t: [s.token_hash for s in t.Session.select()])
    assert token not in stored and len(stored) == 1


async def test_wrong_passwords_are_one_answer_then_rate_limited(relay_factory: StartRelay,
                                                               http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", password_hash=password_hash())
    customer(relay, "nopass")
    answers = [await api.call("POST", "/api/user/login", json={"username": u, "password": "wrong-password"})
               for u in ("alice", "ghost", "nopass")]
    assert {a.status for a in answers} == {401}
    assert len({a.message for a in answers}) == 1  # unknown user, no password, wrong password: the same words
    for _ in range(4):
        assert (await api.call("POST", "/api/user/login", json={"username": "alice", "password": "nope"})).status == 401
    limited = await api.call("POST", "/api/user/login", json={"username": "alice", "password": PASSWORD})
    assert limited.status == 429, "the sixth attempt within 15 minutes is refused even with the right password"
    assert "Too many failed logins" in limited.message
    # another user name from the same address is counted separately
    assert (await api.call("POST", "/api/user/login", json={"username": "ghost", "password": "x"})).status == 401
    # the window slides: 15 minutes later the right password works again
    state = relay.runner.app[ACCOUNTS]
    state.logins._clock = lambda: time.monotonic() + 901  # noqa: SLF001
    assert await api.login("alice")


async def test_limited_login_has_retry_after(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, _ = await started(relay_factory, http)
    for _ in range(5):
        async with http.post(relay.url + "/api/user/login", json={"username": "x", "password": "y"}) as r:
            assert r.status == 401
    async with http.post(relay.url + "/api/user/login", json={"username": "x", "password": "y"}) as r:
        assert r.status == 429 and 1 <= int(r.headers["Retry-After"]) <= 900


@pytest.mark.parametrize("body", [None, [], {"username": "a"}, {"username": 1, "password": "p"},
                                  {"username": "a", "password": "p" * 300}])
async def test_malformed_logins_are_400(relay_factory: StartRelay, http: aiohttp.ClientSession, body: object) -> None:
    relay, _ = await started(relay_factory, http)
    async with http.post(relay.url + "/api/user/login", data=b"" if body is None else None,
                         json=body if body is not None else None) as r:
        got = await r.json()
        assert r.status == 400 and got["success"] is False and got["message"]


async def test_session_and_relay_tokens_never_cross(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", usd=1)
    session = session_for(relay, "alice")
    key = relay.token("alice")
    assert (await api.chat(key)).status == 200
    for path in ("/v1/chat/completions", "/v1/models", "/v1/usage", "/v1/dashboard/billing/subscription"):
        method = "POST" if path.endswith("completions") else "GET"
        a = await api.call(method, path, token=session,
                           json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]})
        assert a.status == 401, (path, a.body)
        assert session not in str(a.body)
    a = await api.call("GET", "/api/user/self", token=key)
    assert a.status == 401 and "sk-" in a.message and key not in a.message
    for header in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}, {}):
        got = await api.call("GET", "/api/token/", headers=header)
        assert got.status == 401
    assert (await api.call("GET", f"/api/user/self?key={session}")).status == 401  # only the header opens /api


async def test_logout_expiry_disable_and_cli_logout_end_sessions(relay_factory: StartRelay,
                                                                 http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice")
    customer(relay, "bob")
    first, second = session_for(relay, "alice"), session_for(relay, "alice")
    assert (await api.call("POST", "/api/user/logout", token=first)).status == 200
    assert (await api.call("GET", "/api/user/self", token=first)).status == 401
    assert (await api.call("GET", "/api/user/self", token=second)).status == 200
    assert main(["user", "logout", "alice", "--config", str(relay.config_path)]) == 0
    assert (await api.call("GET", "/api/user/self", token=second)).status == 401
    expired = session_for(relay, "alice", lifetime=-1)
    assert (await api.call("GET", "/api/user/self", token=expired)).status == 401
    bob = session_for(relay, "bob")
    relay.store.tx(lambda t: accounts.set_user_status(t, "bob", "disabled"))
    got = await api.call("GET", "/api/user/self", token=bob)
    assert got.status == 403 and "disabled" in got.message


async def test_passwd_ends_sessions_and_the_new_password_works(relay_factory: StartRelay,
                                                               http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", password_hash=password_hash())
    old = await api.login("alice")
    relay.store.tx(lambda t: accounts.set_password(t, "alice", accounts.hash_password("a-new-password")))
    assert (await api.call("GET", "/api/user/self", token=old)).status == 401
    assert (await api.call("POST", "/api/user/login",
                           json={"username": "alice", "password": PASSWORD})).status == 401
    assert await api.login("alice", "a-new-password")


async def test_self_registration(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    a = await api.call("POST", "/api/user/register", json={"username": "newbie", "password": "long-enough-pw",
                                                           "role": "admin", "group": "vip", "quota": 10**9})
    assert a.status == 200 and a.data["username"] == "newbie"
    row = relay.store.tx(lambda t: accounts.user_row(t, "newbie"))
    assert (row.role, row.group, row.balance) == ("customer", "default", 0)  # nothing but name and password
    assert (await api.call("POST", "/api/user/register",
                           json={"username": "newbie", "password": "long-enough-pw"})).status == 409
    assert (await api.call("POST", "/api/user/register", json={"username": "x2", "password": "short"})).status == 400
    assert (await api.call("POST", "/api/user/register",
                           json={"username": "has space", "password": "long-enough-pw"})).status == 400
    token = await api.login("newbie", "long-enough-pw")
    assert (await api.call("GET", "/api/user/self", token=token)).data["quota"] == 0


async def test_registration_and_checkin_are_off_unless_configured(relay_factory: StartRelay,
                                                                  http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http, "models:\n  mock-gpt: {input: 2, output: 8}\n"
                                                    "channels:\n  - {name: m, type: mock, models: [mock-gpt]}\n")
    a = await api.call("POST", "/api/user/register", json={"username": "newbie", "password": "long-enough-pw"})
    assert a.status == 403 and "disabled" in a.message
    assert relay.store.tx(lambda t: t.User.select().count()) == 0
    customer(relay, "alice")
    a = await api.call("POST", "/api/user/checkin", token=session_for(relay, "alice"))
    assert a.status == 403 and "not enabled" in a.message
    assert relay.ledger("alice") == []


async def test_unknown_api_paths_answer_in_the_api_shape(relay_factory: StartRelay,
                                                         http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    a = await api.call("GET", "/api/nothing/here")
    assert a.status == 404 and a.body["success"] is False


# --------------------------------------------------------------------------- check-in

async def test_checkin_once_per_calendar_day_in_the_configured_zone(relay_factory: StartRelay,
                                                                    http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice")
    session = session_for(relay, "alice")
    state = relay.runner.app[ACCOUNTS]
    # 15:59 UTC is 23:59 in Asia/Shanghai; two minutes later it is the next day there (not in UTC)
    before = datetime(2026, 3, 1, 15, 59, tzinfo=timezone.utc).timestamp()
    state.clock = lambda: before
    a = await api.call("POST", "/api/user/checkin", token=session)
    assert a.status == 200 and a.data["day"] == "2026-03-01"
    assert 0.01 * USD <= a.data["quota"] <= 0.05 * USD
    again = await api.call("POST", "/api/user/checkin", token=session)
    assert again.status == 409 and "already checked in" in again.message
    state.clock = lambda: before + 120
    b = await api.call("POST", "/api/user/checkin", token=session)
    assert b.status == 200 and b.data["day"] == "2026-03-02"
    assert relay.balance("alice") == a.data["quota"] + b.data["quota"] == b.data["balance"]
    entries = relay.ledger("alice")
    assert sorted(e["request_id"] for e in entries) == [f"checkin:{entries[0]['request_id'].split(':')[1]}:2026-03-01",
                                                        f"checkin:{entries[0]['request_id'].split(':')[1]}:2026-03-02"]
    assert {e["kind"] for e in entries} == {"checkin"}


async def test_checkin_amount_comes_from_the_injected_source(relay_factory: StartRelay,
                                                             http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice")
    seen: list[tuple[int, int]] = []

    class Fixed:
        def between(self, low: int, high: int) -> int:
            seen.append((low, high))
            return high

    relay.runner.app[ACCOUNTS].pick = Fixed()
    a = await api.call("POST", "/api/user/checkin", token=session_for(relay, "alice"))
    assert seen == [(int(0.01 * USD), int(0.05 * USD))]
    assert a.data["quota"] == int(0.05 * USD) and a.data["usd"] == 0.05


# --------------------------------------------------------------------------- redemption

async def test_redeem_credits_once_and_explains_every_refusal(relay_factory: StartRelay,
                                                              http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice")
    customer(relay, "bob")
    good, expired, voided = issue_cards(relay, usd=3, count=3)
    relay.store.tx(lambda t: t.Card.update(expires_at=time.time() - 1).where(t.Card.id == 2).execute())
    relay.store.tx(lambda t: t.Card.update(status="void").where(t.Card.id == 3).execute())
    alice, bob = session_for(relay, "alice"), session_for(relay, "bob")
    a = await api.call("POST", "/api/user/redeem", token=alice, json={"key": good.lower().replace("-", " ")})
    assert a.status == 200 and a.data["quota"] == 3 * USD and a.data["balance"] == 3 * USD
    assert a.data["card"].endswith(good[-4:]) and good not in str(a.body)
    for code, words in ((good, "already been redeemed"), (expired, "expired"), (voided, "voided")):
        got = await api.call("POST", "/api/user/redeem", token=bob, json={"key": code})
        assert got.status == 409 and words in got.message, got.body
    assert relay.balance("bob") == 0 and relay.balance("alice") == 3 * USD
    assert [e["request_id"] for e in relay.ledger("alice")] == ["card:1"]
    # the seed's name for the same thing
    (fresh,) = issue_cards(relay, usd=1)
    assert (await api.call("POST", "/api/user/topup", token=bob, json={"key": fresh})).status == 200
    assert (await api.call("POST", "/api/user/redeem", token=bob, json={})).status == 400


async def test_wrong_codes_are_rate_limited_per_customer(relay_factory: StartRelay,
                                                         http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "mallory")
    customer(relay, "alice")
    (good,) = issue_cards(relay, usd=1)
    mallory, alice = session_for(relay, "mallory"), session_for(relay, "alice")
    for i in range(5):
        got = await api.call("POST", "/api/user/redeem", token=mallory, json={"key": f"T-GUESS-{i:04d}"})
        assert got.status == 404 and "not valid" in got.message
    got = await api.call("POST", "/api/user/redeem", token=mallory, json={"key": good})
    assert got.status == 429 and "wrong card codes" in got.message
    assert relay.balance("mallory") == 0
    # other customers are not affected, and a good code does not count against anyone
    assert (await api.call("POST", "/api/user/redeem", token=alice, json={"key": good})).status == 200


# --------------------------------------------------------------------------- logs and usage

async def test_log_self_is_paged_filtered_and_private(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", usd=5)
    customer(relay, "bob", usd=5)
    ka, kb = relay.token("alice", name="main"), relay.token("bob")
    for i in range(5):
        assert (await api.chat(ka, f"gpt {i}")).status == 200
    for i in range(3):
        assert (await api.chat(ka, f"mini {i}", model="mock-mini")).status == 200
    assert (await api.chat(kb, "bob's")).status == 200
    await relay.settled(9)
    session = session_for(relay, "alice")
    page0 = await api.call("GET", "/api/log/self?p=0&page_size=3", token=session)
    assert page0.status == 200 and page0.data["total"] == 8 and len(page0.data["items"]) == 3
    page2 = await api.call("GET", "/api/log/self?p=2&page_size=3", token=session)
    assert len(page2.data["items"]) == 2
    ids = [r["id"] for r in page0.data["items"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    item = page0.data["items"][0]
    assert item["token_name"] == "main" and item["usd"] == round(item["quota"] / USD, 6)
    assert "channel" not in item and "client_ip" not in item  # the operator's business
    mini = await api.call("GET", "/api/log/self?model_name=mock-mini", token=session)
    assert mini.data["total"] == 3 and {r["model"] for r in mini.data["items"]} == {"mock-mini"}
    future = int(time.time()) + 3600
    assert (await api.call("GET", f"/api/log/self?start_timestamp={future}", token=session)).data["total"] == 0
    assert (await api.call("GET", f"/api/log/self?end_timestamp={future}", token=session)).data["total"] == 8
    assert (await api.call("GET", "/api/log/self?p=-1", token=session)).status == 400
    assert (await api.call("GET", "/api/log/self?page_size=1000", token=session)).status == 400
    assert (await api.call("GET", "/api/log/self?start_timestamp=soon", token=session)).status == 400


async def test_usage_endpoints_report_the_calling_token(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", usd=5)
    key = relay.token("alice", quota=2 * USD)
    other = relay.token("alice", name="other")
    usages = []
    for i, model in enumerate(["mock-gpt", "mock-gpt", "mock-mini"]):
        a = await api.chat(key, f"count me {i}", model=model)
        assert a.status == 200
        usages.append(a.body["usage"])
    assert (await api.chat(other, "not me")).status == 200
    await relay.settled(4)
    logs = [r for r in relay.logs() if r["token_name"] == "t"]
    spent = sum(r["quota"] for r in logs if r["token_id"] == logs[0]["token_id"])
    expected = math.ceil(usages[0]["prompt_tokens"] + 4 * usages[0]["completion_tokens"])
    assert logs[0]["quota"] == expected  # mock-gpt: ratio 1, completion ratio 4

    u = await api.call("GET", "/v1/usage", token=key)
    assert u.status == 200 and u.body["object"] == "usage"
    assert u.body["requests"] == 3 and u.body["total_quota"] == spent
    assert u.body["total_tokens"] == sum(x["total_tokens"] for x in usages)
    assert u.body["total_cost_usd"] == round(spent / USD, 6)
    assert {m["model"]: m["requests"] for m in u.body["by_model"]} == {"mock-gpt": 2, "mock-mini": 1}
    today = datetime.now(timezone.utc).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    assert [d["date"] for d in u.body["by_day"]] == [today.isoformat()]

    b = await api.call("GET", "/v1/dashboard/billing/usage", token=key)
    assert b.body["object"] == "list"
    assert b.body["total_usage"] == pytest.approx(spent / USD * 100)
    (day,) = b.body["daily_costs"]
    assert {i["name"] for i in day["line_items"]} == {"mock-gpt", "mock-mini"}
    assert sum(i["cost"] for i in day["line_items"]) == pytest.approx(b.body["total_usage"])

    s = await api.call("GET", "/v1/dashboard/billing/subscription", token=key)
    assert s.body["object"] == "billing_subscription" and s.body["access_until"] == 0
    # limited token: what it can still spend + what it spent = its quota
    assert s.body["hard_limit_usd"] == pytest.approx(2.0)
    assert s.body["hard_limit_usd"] - b.body["total_usage"] / 100 == pytest.approx((2 * USD - spent) / USD)
    s2 = await api.call("GET", "/v1/dashboard/billing/subscription", token=other)
    other_spent = sum(r["quota"] for r in relay.logs() if r["token_id"] != logs[0]["token_id"])
    assert s2.body["hard_limit_usd"] == pytest.approx((relay.balance("alice") + other_spent) / USD)

    old = await api.call("GET", "/v1/usage?start_date=2020-01-01&end_date=2020-02-01", token=key)
    assert old.body["requests"] == 0 and old.body["by_day"] == []
    for bad in ("start_date=yesterday", "start_date=2026-02-01&end_date=2026-01-01",
                "start_date=2020-01-01&end_date=2026-01-01"):
        got = await api.call("GET", f"/v1/usage?{bad}", token=key)
        assert got.status == 400 and "error" in got.body, bad


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -2**70, 10**30, 7])
    if kind == 3:
        return rng.choice([0.5, -1e308, 1e308, 1.7976931348623157e308])
    if kind in (4, 5):
        return rng.choice(["", "x" * 10_000, "\u0000", "é🙂\u202e", "1", "-1", "sk-abc", "rks-abc", "card",
                           "2026-01-01", "' OR '1'='1", "mock-gpt", "10.0.0.0/8,zz"])
    if kind in (6, 7):
        keys = ["name", "id", "key", "code", "status", "remain_quota", "unlimited_quota", "expired_time",
                "models", "subnet", "group", "username", "password", "rpm", "tpm", "role", "quota"]
        return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(6))}
    return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


async def test_hostile_bodies_never_cause_a_server_error(relay_factory: StartRelay,
                                                         http: aiohttp.ClientSession) -> None:
    relay, api = await started(relay_factory, http)
    customer(relay, "alice", usd=1)
    session = session_for(relay, "alice")
    rng = random.Random(7)
    endpoints = [("POST", "/api/token/"), ("PUT", "/api/token/"), ("PUT", "/api/token/?status_only=true"),
                 ("POST", "/api/user/redeem"), ("POST", "/api/user/register"), ("POST", "/api/user/login")]
    seen: Counter[int] = Counter()
    for i in range(240):
        method, path = endpoints[i % len(endpoints)]
        body = random_json(rng)
        if i % 2 and isinstance(body, dict):
            body.setdefault("name", "fuzz")
            body.setdefault("id", 1)
        async with http.request(method, relay.url + path, json=body,
                                headers={"Authorization": f"Bearer {session}"}) as r:
            got = await r.json(content_type=None)
            assert r.status < 500, (method, path, body, got)
            assert set(got) == {"success", "message", "data"} and got["success"] is (r.status == 200)
            seen[r.status] += 1
    async with http.post(relay.url + "/api/token/", data=b"{not json",
                         headers={"Authorization": f"Bearer {session}"}) as r:
        assert r.status == 400
    assert seen[400] > 50, seen
    # and the server is still well: a plain request works
    made = await api.call("POST", "/api/token/", token=session, json={"name": "after the storm"})
    assert made.status == 200 and relay.audit_ok()
