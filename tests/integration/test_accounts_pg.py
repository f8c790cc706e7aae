"""Cards and check-ins on PostgreSQL with two stores writing at once, as two relay
instances would (RELIABILITY §2.2: the one-api double redemption happened only on a server
database).  Each store runs its own writer thread; the conditional claim must still credit
a card exactly once and a day's check-in exactly once."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest

from relaykit.store import accounts, billing, cards
from relaykit.store.store import Store

from .cluster_support import PgDatabases, pg_databases, pg_url  # noqa: F401  (fixtures)

KEY = b"pg-card-key-for-tests-0123456789"


@pytest.fixture
def two_stores(pg_url: str) -> Any:  # noqa: F811
    stores = [Store(pg_url), Store(pg_url)]
    stores[0].migrate()
    for s in stores:
        s.writer.start()
    yield stores
    for s in stores:
        s.writer.stop()
        s.close()


@pytest.mark.parametrize("customers", [1, 50])
def test_one_card_raced_by_two_instances_credits_once(two_stores: list[Store], customers: int) -> None:
    a, b = two_stores

    def setup(t: Any) -> tuple[list[int], str]:
        ids = [int(accounts.create_user(t, f"u{i}").id) for i in range(customers)]
        return ids, cards.issue(t, KEY, amount=777, count=1, prefix="PG", expires_at=None, batch="pg")[0]

    ids, code = a.tx(setup)

    def redeem(i: int) -> str:
        store = a if i % 2 else b
        try:
            store.writer.call(lambda t: cards.redeem(t, KEY, code, ids[i % customers]))
            return "credited"
        except cards.CardUnavailable as exc:
            assert "already been redeemed" in exc.message
            return "refused"

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(redeem, range(50)))
    assert outcomes.count("credited") == 1 and outcomes.count("refused") == 49
    assert a.tx(lambda t: sum(int(u.balance) for u in t.User.select())) == 777
    assert a.tx(lambda t: t.Ledger.select().where(t.Ledger.kind == "card").count()) == 1
    assert all(line.ok for line in a.tx(billing.audit))


def test_one_days_checkin_raced_by_two_instances_credits_once(two_stores: list[Store]) -> None:
    a, b = two_stores
    uid = a.tx(lambda t: int(accounts.create_user(t, "alice").id))

    def checkin(i: int) -> bool:
        try:
            (a if i % 2 else b).writer.call(lambda t: billing.checkin(t, uid, "2026-05-01", 100 + i))
            return True
        except billing.AlreadyDone:
            return False

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        got = list(pool.map(checkin, range(20)))
    assert got.count(True) == 1
    balance = a.tx(lambda t: int(t.User.get_by_id(uid).balance))
    assert 100 <= balance < 120 and all(line.ok for line in a.tx(billing.audit))
