"""Money under concurrency against a real server (RELIABILITY §5.2 A4, A5), a mixed load of
chat requests, redemptions, check-ins and top-ups checked against hand-computed balances,
and secrets that must never reach the database file or the logs (G1, F5)."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relaykit.server.api_auth import ACCOUNTS
from relaykit.store import accounts, billing

from .accounts_support import ACCOUNTS_CONFIG, USD, Answer, Api, customer, issue_cards, session_for
from .conftest import StartRelay
from .harness import Relay


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        yield s


def total_balance(relay: Relay) -> int:
    return int(relay.store.tx(lambda t: sum(u.balance for u in t.User.select())))


@pytest.mark.parametrize("customers", [1, 50])
async def test_fifty_concurrent_redemptions_of_one_card_credit_once(relay_factory: StartRelay,
                                                                    http: aiohttp.ClientSession,
                                                                    customers: int) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    names = [f"c{i}" for i in range(customers)]
    for n in names:
        customer(relay, n, usd=1)
    sessions = [session_for(relay, names[i % customers]) for i in range(50)]
    (code,) = issue_cards(relay, usd=5)
    before = total_balance(relay)
    api = Api(http, relay)
    answers = await asyncio.gather(*(api.call("POST", "/api/user/redeem", token=s, json={"key": code})
                                     for s in sessions))
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 1, 409: 49}, statuses
    assert all("already been redeemed" in a.message for a in answers if a.status == 409)
    winner = next(i for i, a in enumerate(answers) if a.status == 200)
    assert total_balance(relay) == before + 5 * USD
    assert relay.balance(names[winner % customers]) == USD + 5 * USD
    refs = relay.store.tx(lambda t: [r.request_id for r in t.Ledger.select().where(t.Ledger.kind == "card")])
    assert refs == ["card:1"]
    assert relay.audit_ok()


async def test_two_hundred_mixed_operations_keep_every_balance_exact(relay_factory: StartRelay,
                                                                     http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(ACCOUNTS_CONFIG)
    frozen = time.time()
    relay.runner.app[ACCOUNTS].clock = lambda: frozen  # one calendar day for every check-in
    names = ["ann", "ben", "cat", "dan"]
    expected: dict[str, int] = {}
    keys, sessions = {}, {}
    for n in names:
        customer(relay, n, usd=2)
        expected[n] = 2 * USD
        keys[n] = relay.token(n)
        sessions[n] = session_for(relay, n)
    codes = issue_cards(relay, usd=0.5, count=10)
    api = Api(http, relay)
    rng = random.Random(4)
    topups: dict[str, int] = defaultdict(int)

    async def topup(name: str, amount: int) -> tuple[str, str, int]:
        # the CLI's way: its own connection and transaction, racing the server's writer thread
        await asyncio.to_thread(relay.store.tx, lambda t: billing.topup(t, name, amount, note="mixed"))
        return "topup", name, 200

    async def op(kind: str, name: str, arg: Any) -> tuple[str, str, Answer | int]:
        if kind == "chat":
            return kind, name, await api.chat(keys[name], f"request number {arg}")
        if kind == "redeem":
            return kind, name, await api.call("POST", "/api/user/redeem", token=sessions[name], json={"key": arg})
        return kind, name, await api.call("POST", "/api/user/checkin", token=sessions[name])

    jobs: list[Any] = []
    for i in range(80):
        jobs.append(op("chat", rng.choice(names), i))
    for code in codes:
        for _ in range(4):
            jobs.append(op("redeem", rng.choice(names), code))
    for n in names:
        for _ in range(10):
            jobs.append(op("checkin", n, None))
    for _ in range(40):
        name, amount = rng.choice(names), rng.randint(1, 50_000)
        topups[name] += amount
        jobs.append(topup(name, amount))
    assert len(jobs) == 200
    rng.shuffle(jobs)
    results = await asyncio.gather(*jobs)

    by_kind: dict[str, Counter[int]] = defaultdict(Counter)
    chats = 0
    for kind, name, res in results:
        status = res if isinstance(res, int) else res.status
        by_kind[kind][status] += 1
        assert status < 500, (kind, res)
        if kind == "chat":
            usage = res.body["usage"]
            # mock-gpt: input $2/M = ratio 1, output $8/M = completion ratio 4, group ratio 1
            expected[name] -= math.ceil(usage["prompt_tokens"] + 4 * usage["completion_tokens"])
            chats += 1
        elif kind == "redeem" and status == 200:
            expected[name] += int(0.5 * USD)
        elif kind == "checkin" and status == 200:
            expected[name] += res.data["quota"]
    for name, amount in topups.items():
        expected[name] += amount
    assert by_kind["chat"] == {200: 80}
    assert by_kind["redeem"] == {200: 10, 409: 30}
    assert by_kind["checkin"] == {200: 4, 409: 36}
    assert by_kind["topup"] == {200: 40}
    await relay.settled(chats)
    assert {n: relay.balance(n) for n in names} == expected
    assert relay.audit_ok()
    refs = relay.store.tx(lambda t: [r.request_id for r in t.Ledger.select().where(t.Ledger.kind == "card")])
    assert sorted(refs, key=lambda r: int(r.split(":")[1])) == [f"card:{i}" for i in range(1, 11)]


async def test_no_secret_reaches_the_database_file_or_the_logs(relay_factory: StartRelay,
                                                               http: aiohttp.ClientSession,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, peewee's SQL included
    relay = await relay_factory(ACCOUNTS_CONFIG)
    api = Api(http, relay)
    password = "pw-CANARY-" + "q" * 20
    assert (await api.call("POST", "/api/user/register", json={"username": "eve", "password": password})).status == 200
    session = await api.login("eve", password)
    made = await api.call("POST", "/api/token/", token=session, json={"name": "k"})
    key = made.data["key"]
    codes = issue_cards(relay, usd=1, count=3)
    assert (await api.call("POST", "/api/user/redeem", token=session, json={"key": codes[0]})).status == 200
    assert (await api.call("POST", "/api/user/redeem", token=session, json={"key": codes[0]})).status == 409
    assert (await api.call("POST", "/api/user/redeem", token=session, json={"key": codes[1] + "X"})).status == 404
    assert (await api.chat(key)).status == 200
    assert (await api.call("GET", "/v1/usage", token=key)).status == 200
    assert (await api.call("GET", "/api/user/self", token=key)).status == 401
    assert (await api.chat(session)).status == 401
    await relay.settled(1)
    relay.store.tx(lambda t: accounts.user_row(t, "eve"))
    db = Path(relay.settings.database_url.removeprefix("sqlite:///"))
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    assert any(p.name.endswith("-wal") for p in files)
    raw = b"".join(p.read_bytes() for p in files)
    logs = caplog.text
    assert "SELECT" in logs  # the SQL really was captured
    secrets_ = {"session": session, "relay key": key, "password": password,
                **{f"card {i}": c for i, c in enumerate(codes)},
                **{f"card {i} undashed": c.replace("-", "") for i, c in enumerate(codes)}}
    for what, secret in secrets_.items():
        assert secret.encode() not in raw, f"{what} is in the database file"
        assert secret not in logs, f"{what} is in the logs"
