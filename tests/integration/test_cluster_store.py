"""The store on PostgreSQL: the same migrations and repositories as SQLite, and money that
stays exact when two stores (as two instances would) write the same rows at once."""

from __future__ import annotations

import concurrent.futures
import threading
from functools import partial
from typing import Any

import pytest

from relaykit.errors import InsufficientQuota
from relaykit.store import accounts, billing
from relaykit.store.migrations import MIGRATIONS, pending
from relaykit.store.pg import SessionLock, redact, retryable
from relaykit.store.store import Store

from .cluster_support import PgDatabases, pg_databases, pg_url  # noqa: F401  (fixtures)


def _stores(url: str, n: int = 2) -> list[Store]:
    stores = [Store(url) for _ in range(n)]
    for s in stores:
        s.writer.start()
    return stores


def _stop(stores: list[Store]) -> None:
    for s in stores:
        s.writer.stop()
        s.close()


def test_migrations_apply_once_even_when_two_instances_start_together(pg_url: str) -> None:
    a, b = Store(pg_url), Store(pg_url)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda s: s.migrate(), (a, b)))
    everything = [name for _, name, _ in MIGRATIONS]
    # one of them applied everything, the other found nothing to do
    assert sorted(results, key=len) == [[], everything]
    assert a.tx(pending) == [] and b.migrate() == []
    rows = a.tx(lambda t: [(m.id, m.name) for m in t.Migration.select().order_by(t.Migration.id)])
    assert rows == [(n, name) for n, name, _ in MIGRATIONS]
    _stop([a, b])


def test_two_writers_never_hold_more_than_the_balance(pg_url: str) -> None:
    """200 holds of 10 raced by two writer threads (two instances) on a balance of 500:
    exactly 50 succeed, the balance ends at 0, never below."""
    a, b = _stores(pg_url)
    a.migrate()
    uid = a.tx(lambda t: (accounts.create_user(t, "alice"), billing.topup(t, "alice", 500))[0].id)

    def hold(store: Store, i: int) -> bool:
        try:
            store.writer.call(partial(billing.place_hold, request_id=f"r{i}", user_id=uid, token_id=None,
                                      token_limited=False, amount=10, model="m"))
            return True
        except InsufficientQuota:
            return False

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        got = list(pool.map(lambda i: hold(a if i % 2 else b, i), range(200)))
    assert sum(got) == 50
    assert a.tx(lambda t: t.User.get_by_id(uid).balance) == 0
    assert all(line.ok for line in a.tx(billing.audit))
    assert a.tx(billing.release_stale_holds) == 50
    assert a.tx(lambda t: t.User.get_by_id(uid).balance) == 500
    _stop([a, b])


def test_a_deadlocked_batch_is_retried_whole(pg_url: str) -> None:
    """Two writers lock two customers' rows in opposite orders inside one batch each;
    PostgreSQL kills one transaction, whose writer runs the batch again: both succeed."""
    a, b = _stores(pg_url)
    a.migrate()
    ids = a.tx(lambda t: [accounts.create_user(t, n).id for n in ("u1", "u2")])
    for n in ("u1", "u2"):
        a.tx(partial(billing.topup, user_name=n, amount=100))
    barrier = threading.Barrier(2, timeout=10)
    first_try = {"a": True, "b": True}

    def bump(uid: int) -> Any:
        return lambda t: t.User.update(balance=t.User.balance + 1).where(t.User.id == uid).execute()

    def meet(who: str) -> Any:
        def op(t: Any) -> None:
            if first_try[who]:  # line both transactions up the first time only
                first_try[who] = False
                barrier.wait()
        return op

    # keep each writer busy while both batches are queued, so each takes its three at once
    gate = threading.Event()
    busy = [w.submit(lambda t: gate.wait(10)) for w in (a.writer, b.writer)]
    fa = [a.writer.submit(bump(ids[0])), a.writer.submit(meet("a")), a.writer.submit(bump(ids[1]))]
    fb = [b.writer.submit(bump(ids[1])), b.writer.submit(meet("b")), b.writer.submit(bump(ids[0]))]
    gate.set()
    for f in busy + fa + fb:
        f.result(timeout=30)
    balances = a.tx(lambda t: [t.User.get_by_id(i).balance for i in ids])
    assert balances == [102, 102]  # each bump applied exactly once, despite the retry
    _stop([a, b])


def test_retryable_sees_through_peewee_wrapping() -> None:
    class Fake(Exception):
        sqlstate = "40P01"

    wrapped = RuntimeError(Fake())
    assert retryable(wrapped)
    other = RuntimeError("x")
    other.__cause__ = Fake()
    assert retryable(other)
    assert not retryable(ValueError("unique violation"))


def test_only_one_instance_holds_the_job_lock(pg_url: str) -> None:
    one, two = SessionLock(pg_url, "jobs"), SessionLock(pg_url, "jobs")
    assert one.try_hold() and one.try_hold()  # taken, and still held
    assert not two.try_hold()
    one.release()
    assert two.try_hold()
    assert not one.try_hold()
    two.release()
    one.release()


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://rk:s3cret@db.example:5432/rk") == "postgresql://rk:***@db.example:5432/rk"
    assert redact("postgresql://rk@db/rk") == "postgresql://rk@db/rk"
    assert "s3cret" not in redact("redis://:s3cret@cache:6379/0")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_repositories_behave_the_same_on_both_databases(kind: str, tmp_path: Any,
                                                        pg_databases: PgDatabases) -> None:  # noqa: F811
    url = f"sqlite:///{tmp_path / 'r.db'}" if kind == "sqlite" else pg_databases.new()
    s = Store(url)
    s.migrate()
    s.writer.start()
    uid = s.tx(lambda t: (accounts.create_user(t, "bob"), billing.topup(t, "bob", 1000))[0].id)
    ticket = s.writer.call(partial(billing.place_hold, request_id="q1", user_id=uid, token_id=None,
                                   token_limited=False, amount=400, model="m"))
    with pytest.raises(InsufficientQuota):
        s.writer.call(partial(billing.place_hold, request_id="q2", user_id=uid, token_id=None,
                              token_limited=False, amount=700, model="m"))
    assert s.writer.call(partial(billing.settle_hold, ticket=ticket, actual=150, log_row=None)) == 150
    assert s.writer.call(partial(billing.settle_hold, ticket=ticket, actual=150, log_row=None)) == 0
    assert s.tx(lambda t: billing.refund(t, "q1", 50)) == 50
    assert [(e["kind"], e["amount"]) for e in s.tx(lambda t: billing.ledger_entries(t, uid))] == [
        ("refund", 50), ("charge", -150), ("topup", 1000)]
    assert all(line.ok for line in s.tx(billing.audit))
    s.stop()


def test_migration_6_rekeys_an_older_postgres_hold_table_and_keeps_its_open_holds(pg_url: str) -> None:  # noqa: F811
    s = Store(pg_url)
    try:
        s.migrate()
        uid = s.tx(lambda t: accounts.create_user(t, "ann").id)
        s.tx(lambda t: billing.topup(t, "ann", 1000))

        def as_before_6(t: Any) -> None:
            # the hold table as migrations 1-5 made it on PostgreSQL: a serial id and a unique index
            t.db.execute_sql('DROP TABLE "hold"')
            t.db.execute_sql('CREATE TABLE "hold" ("id" SERIAL NOT NULL PRIMARY KEY, "request_id" VARCHAR(64) NOT NULL, '
                             '"user_id" INTEGER NOT NULL REFERENCES "user" ("id") ON DELETE CASCADE, '
                             '"token_id" INTEGER, "token_limited" BOOLEAN NOT NULL, "amount" BIGINT NOT NULL, '
                             '"model" VARCHAR(128) NOT NULL, "created_at" DOUBLE PRECISION NOT NULL)')
            t.db.execute_sql('CREATE UNIQUE INDEX "hold_request_id" ON "hold" ("request_id")')
            t.db.execute_sql('INSERT INTO "hold" ("request_id", "user_id", "token_limited", "amount", "model", '
                             '"created_at") VALUES (%s, %s, false, 300, %s, 1.0)', ("req-in-flight", uid, "m"))
            t.User.update(balance=t.User.balance - 300).where(t.User.id == uid).execute()
            t.Migration.delete().where(t.Migration.id == 6).execute()
        s.tx(as_before_6)
        assert s.migrate() == ["holds keyed by request id"]

        def shape(t: Any) -> tuple[list[str], list[tuple[Any, ...]], list[str]]:
            cols = [r[0] for r in t.db.execute_sql(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'hold' ORDER BY ordinal_position")]
            key = [r[0] for r in t.db.execute_sql(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = '\"hold\"'::regclass AND i.indisprimary")]
            rows = [tuple(r) for r in t.db.execute_sql('SELECT "request_id", "user_id", "amount" FROM "hold"')]
            return cols, rows, key
        cols, rows, key = s.tx(shape)
        assert "id" not in cols and key == ["request_id"] and rows == [("req-in-flight", uid, 300)]
        assert all(line.ok for line in s.tx(billing.audit))
        ticket = billing.HoldTicket("req-in-flight", uid, None, False, 300)
        assert s.tx(lambda t: billing.settle_hold(t, ticket, 120, None)) == 120
        assert s.tx(lambda t: accounts.user_row(t, "ann").balance) == 880
        assert all(line.ok for line in s.tx(billing.audit))
    finally:
        s.close()
