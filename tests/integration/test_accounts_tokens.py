"""Customers' own relay tokens through /api: the README's curl examples run as written,
ownership, mass assignment, and every token limit enforced by the relay (SPEC §1)."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relaykit.store import accounts

from .accounts_support import ACCOUNTS_CONFIG, PASSWORD, USD, Api, card_with_code, customer, session_for
from .conftest import StartRelay
from .harness import Relay

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# --------------------------------------------------------------------------- the README, as written

def readme_commands() -> list[str]:
    """Shell lines of the first bash block under '### The self-service API', continuations joined."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### The self-service API"):]
    block = section[section.index("```bash\n") + 8:]
    block = block[:block.index("```")]
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if pending:
            line = pending + " " + line
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].strip()
            continue
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def parse_curl(line: str, env: dict[str, str]) -> tuple[str, str, dict[str, str], str | None]:
    # the examples put $VARS only outside single quotes, where the shell expands them
    expanded = re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: env[m.group(1)], line)
    args = shlex.split(expanded)
    assert args[0] == "curl", line
    method, url, headers, data = None, None, {}, None
    i = 1
    while i < len(args):
        a = args[i]
        if a == "-s":
            i += 1
            continue
        if a == "-X":
            method = args[i + 1]
        elif a == "-H":
            name, _, value = args[i + 1].partition(":")
            headers[name.strip()] = value.strip()
        elif a == "-d":
            data = args[i + 1]
        else:
            assert not a.startswith("-"), f"the test does not know curl option {a}"
            url = a
            i += 1
            continue
        i += 2
    assert url is not None
    return method or ("POST" if data is not None else "GET"), url, headers, data


async def test_readme_api_examples_work_as_written(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    customer(relay, "alice", usd=1, password_hash=accounts.hash_password(PASSWORD))
    card_with_code(relay, "SHOP-7K2M-Q9XA-4TFE-B8NW-3HJD-RC6P-V1YZ", usd=5)
    env = {"RELAYKIT_URL": relay.url}
    last: dict[str, Any] = {}
    seen: list[tuple[str, str]] = []
    for line in readme_commands():
        if line.startswith("export "):
            for assignment in shlex.split(line)[1:]:
                name, _, value = assignment.partition("=")
                if name == "SESSION":
                    value = last["session"]
                elif name == "RELAYKIT_TOKEN":
                    value = last["key"]
                elif name != "RELAYKIT_URL":
                    raise AssertionError(f"unexpected export {name}")
                if name != "RELAYKIT_URL":
                    env[name] = value
            continue
        method, url, headers, data = parse_curl(line, env)
        async with http.request(method, url, headers=headers, data=data) as resp:
            body = await resp.json(content_type=None)
        path = url.removeprefix(relay.url).split("?")[0]
        assert resp.status == 200, (line, body)
        if path.startswith("/api/"):
            assert body["success"] is True and set(body) == {"success", "message", "data"}, (line, body)
        seen.append((method, path))
        data_ = body.get("data") if isinstance(body, dict) else None
        if path == "/api/user/login":
            last["session"] = data_["token"]
        elif path == "/api/user/self":
            assert data_["username"] == "alice" and data_["quota"] == USD
        elif path == "/api/user/redeem":
            assert data_["quota"] == 5 * USD
        elif path == "/api/token/" and method == "POST":
            assert data_["key"].startswith("sk-") and data_["id"] == 1 and data_["models"] == "mock-gpt"
            assert data_["remain_quota"] == 500000 and data_["unlimited_quota"] is False
            last["key"] = data_["key"]
        elif path == "/api/token/" and method == "GET":
            assert [t["id"] for t in data_] == [1] and data_[0]["key"] != last["key"]
            assert data_[0]["key"].endswith(last["key"][-4:]) and last["key"] not in str(body)
        elif path == "/api/token/" and method == "PUT" and "status_only" in url:
            assert data_["status"] == 2 and data_["state"] == "disabled"
        elif path == "/api/token/" and method == "PUT":
            assert data_["name"] == "laptop-2" and data_["remain_quota"] == 1000000
        elif path == "/v1/chat/completions":
            assert body["choices"][0]["message"]["content"]
            await relay.settled(1)
        elif path == "/api/log/self":
            assert data_["total"] == 1 and data_["items"][0]["token_name"] == "laptop-2"
        elif path == "/v1/usage":
            assert body["object"] == "usage" and {"total_cost_usd", "total_tokens", "by_day", "by_model"} <= set(body)
        elif path == "/v1/dashboard/billing/subscription":
            assert body["hard_limit_usd"] == pytest.approx(2.0)  # the token's cap of 1 000 000 quota
        elif path == "/api/token/1" and method == "DELETE":
            pass
    assert ("POST", "/api/token/") in seen and ("PUT", "/api/token/") in seen
    assert ("GET", "/api/token/") in seen and ("DELETE", "/api/token/1") in seen
    api = Api(http, relay)
    assert (await api.call("GET", "/api/token/", token=env["SESSION"])).data == []
    assert (await api.chat(env["RELAYKIT_TOKEN"])).status == 401  # deleted: refused by the relay at once


# --------------------------------------------------------------------------- ownership

async def test_a_customer_cannot_see_change_or_delete_anothers_token(relay_factory: StartRelay,
                                                                     http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    customer(relay, "alice", usd=1)
    customer(relay, "bob", usd=1)
    api = Api(http, relay)
    alice, bob = session_for(relay, "alice"), session_for(relay, "bob")
    made = await api.call("POST", "/api/token/", token=bob, json={"name": "bob's"})
    bob_key, bob_id = made.data["key"], made.data["id"]
    mine = await api.call("POST", "/api/token/", token=alice, json={"name": "alice's"})
    assert [t["id"] for t in (await api.call("GET", "/api/token/", token=alice)).data] == [mine.data["id"]]
    assert (await api.call("GET", f"/api/token/{bob_id}", token=alice)).status == 404
    assert (await api.call("GET", "/api/token/999", token=alice)).message == "You have no token with id 999."
    assert (await api.call("GET", f"/api/token/{bob_id}", token=alice)).message == \
        f"You have no token with id {bob_id}."  # the same words as for a token that does not exist
    for body in ({"id": bob_id, "name": "pwned"}, {"id": bob_id, "status": 2}):
        assert (await api.call("PUT", "/api/token/", token=alice, json=body)).status == 404
    assert (await api.call("PUT", "/api/token/?status_only=true", token=alice,
                           json={"id": bob_id, "status": 2})).status == 404
    assert (await api.call("DELETE", f"/api/token/{bob_id}", token=alice)).status == 404
    row = (await api.call("GET", f"/api/token/{bob_id}", token=bob)).data
    assert row["name"] == "bob's" and row["status"] == 1
    assert (await api.chat(bob_key)).status == 200
    # moving one's own token to someone else is not a thing either
    await api.call("PUT", "/api/token/", token=alice, json={"id": mine.data["id"], "user_id": 2})
    owner = relay.store.tx(lambda t: t.Token.get_by_id(mine.data["id"]).user_id)
    assert owner == relay.store.tx(lambda t: accounts.user_row(t, "alice").id)


async def test_mass_assignment_changes_nothing_it_should_not(relay_factory: StartRelay,
                                                              http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    customer(relay, "alice", usd=1)
    api = Api(http, relay)
    session = session_for(relay, "alice")
    before = relay.store.tx(lambda t: accounts.user_dict(t, accounts.user_row(t, "alice"), USD))
    sneaky = {"name": "x", "role": "admin", "quota": 10**12, "is_admin": True, "user_id": 99, "used_quota": -5,
              "key": "sk-chosen-by-me", "id": 77, "balance": 10**12, "status": 1}
    made = await api.call("POST", "/api/token/", token=session, json=sneaky)
    assert made.status == 200
    assert made.data["id"] != 77 and made.data["key"] != "sk-chosen-by-me" and made.data["used_quota"] == 0
    token_id = made.data["id"]
    await api.call("PUT", "/api/token/", token=session, json={**sneaky, "id": token_id})
    after = relay.store.tx(lambda t: accounts.user_dict(t, accounts.user_row(t, "alice"), USD))
    assert after == before  # role, balance, group: untouched
    for group in ("vip", "no-such-group"):
        got = await api.call("POST", "/api/token/", token=session, json={"name": "cheap", "group": group})
        assert got.status == 403 and "group" in got.message
        got = await api.call("PUT", "/api/token/", token=session, json={"id": token_id, "group": group})
        assert got.status == 403
    assert (await api.call("POST", "/api/token/", token=session, json={"name": "own", "group": "default"})).status == 200
    bad_bodies: list[Any] = [{"name": ""}, {"name": 5}, {"name": "q", "remain_quota": -1},
                             {"name": "q", "remain_quota": "lots"}, {"name": "q", "expired_time": 1000},
                             {"name": "q", "subnet": "not-an-ip"}, {"name": "q", "unlimited_quota": "yes"},
                             {"name": "q", "models": 7}, [], {"name": "q", "remain_quota": 10**30}]
    for body in bad_bodies:
        got = await api.call("POST", "/api/token/", token=session, json=body)
        assert got.status == 400, body
    got = await api.call("PUT", "/api/token/", token=session, json={"id": token_id, "status": 3})
    assert got.status == 400


async def test_a_revoked_token_stays_revoked(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    customer(relay, "alice", usd=1)
    api = Api(http, relay)
    session = session_for(relay, "alice")
    made = await api.call("POST", "/api/token/", token=session, json={"name": "t"})
    relay.store.tx(lambda t: accounts.revoke_token(t, made.data["id"]))
    for url, body in (("/api/token/?status_only=true", {"id": made.data["id"], "status": 1}),
                      ("/api/token/", {"id": made.data["id"], "name": "again"})):
        got = await api.call("PUT", url, token=session, json=body)
        assert got.status == 403 and "revoked" in got.message
    await asyncio.sleep(1.0)
    assert (await api.chat(made.data["key"])).status == 401


async def test_disable_and_enable_through_the_api_reach_the_relay(relay_factory: StartRelay,
                                                                  http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    customer(relay, "alice", usd=1)
    api = Api(http, relay)
    session = session_for(relay, "alice")
    made = await api.call("POST", "/api/token/", token=session, json={"name": "t"})
    key, tid = made.data["key"], made.data["id"]
    assert (await api.chat(key)).status == 200
    await api.call("PUT", "/api/token/?status_only=true", token=session, json={"id": tid, "status": 2, "name": "no"})
    assert (await api.call("GET", f"/api/token/{tid}", token=session)).data["name"] == "t"  # status only
    assert await eventually(lambda: api.chat(key), 401)
    await api.call("PUT", "/api/token/?status_only=true", token=session, json={"id": tid, "status": 1})
    assert await eventually(lambda: api.chat(key), 200)
    await relay.settled(2)


async def eventually(call: Any, status: int, within: float = 2.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await call()).status == status:
            return True
        await asyncio.sleep(0.1)
    return False


# --------------------------------------------------------------------------- token limits (SPEC §1)

async def limits_relay(relay_factory: StartRelay, http: aiohttp.ClientSession) -> tuple[Relay, Api, str]:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    customer(relay, "alice", usd=1)
    return relay, Api(http, relay), session_for(relay, "alice")


async def test_token_quota_is_a_cap_separate_from_the_balance(relay_factory: StartRelay,
                                                               http: aiohttp.ClientSession) -> None:
    relay, api, session = await limits_relay(relay_factory, http)
    # a hold for mock-mini with the default output budget is about 0.15 * 4096 quota; 2000 fits one request
    made = await api.call("POST", "/api/token/", token=session, json={"name": "capped", "remain_quota": 2000,
                                                                     "models": "mock-mini"})
    key = made.data["key"]
    first = await api.call("POST", "/v1/chat/completions", token=key, json={
        "model": "mock-mini", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    assert first.status == 200
    await relay.settled(1)
    row = (await api.call("GET", f"/api/token/{made.data['id']}", token=session)).data
    assert row["used_quota"] > 0 and row["remain_quota"] == 2000 - row["used_quota"]
    assert relay.balance("alice") == USD - row["used_quota"]  # both moved by the same charge
    big = await api.call("POST", "/v1/chat/completions", token=key, json={
        "model": "mock-mini", "max_tokens": 100_000, "messages": [{"role": "user", "content": "hi"}]})
    assert big.status == 402 and "token" in big.body["error"]["message"]
    assert relay.balance("alice") == USD - row["used_quota"]  # a refused request costs nothing


async def test_unlimited_token_spends_the_balance(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api, session = await limits_relay(relay_factory, http)
    made = await api.call("POST", "/api/token/", token=session, json={"name": "free", "unlimited_quota": True,
                                                                     "remain_quota": 5})
    assert made.data["unlimited_quota"] is True
    for _ in range(3):
        assert (await api.chat(made.data["key"])).status == 200
    await relay.settled(3)
    spent = sum(r["quota"] for r in relay.logs())
    assert relay.balance("alice") == USD - spent and spent > 5


async def test_expired_token_is_refused(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api, session = await limits_relay(relay_factory, http)
    soon = int(time.time()) + 2
    made = await api.call("POST", "/api/token/", token=session, json={"name": "brief", "expired_time": soon})
    assert made.data["expired_time"] == soon
    assert (await api.chat(made.data["key"])).status == 200
    await asyncio.sleep(max(0.0, soon - time.time()) + 0.1)
    got = await api.chat(made.data["key"])
    assert got.status == 401 and "expired" in got.body["error"]["message"]
    listed = (await api.call("GET", "/api/token/", token=session)).data[0]
    assert listed["status"] == 3 and listed["state"] == "expired"
    await relay.settled(1)


async def test_model_allow_list_is_enforced(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api, session = await limits_relay(relay_factory, http)
    made = await api.call("POST", "/api/token/", token=session, json={"name": "m", "models": ["mock-mini"]})
    key = made.data["key"]
    assert (await api.chat(key, model="mock-mini")).status == 200
    got = await api.chat(key, model="mock-gpt")
    assert got.status == 403
    async with http.get(relay.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}) as r:
        assert [m["id"] for m in (await r.json())["data"]] == ["mock-mini"]
    await relay.settled(1)


async def test_ip_allow_list_is_enforced(relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    relay, api, session = await limits_relay(relay_factory, http)
    elsewhere = await api.call("POST", "/api/token/", token=session, json={"name": "far", "subnet": "10.0.0.0/8"})
    here = await api.call("POST", "/api/token/", token=session,
                          json={"name": "near", "subnet": "10.0.0.0/8,127.0.0.0/8"})
    got = await api.chat(elsewhere.data["key"])
    assert got.status == 403 and "IP" in got.body["error"]["message"]
    assert (await api.chat(here.data["key"])).status == 200
    await relay.settled(1)
