"""Storage: the writer thread's group commit, holds and settlement, the audit, caches."""

from __future__ import annotations

import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest

from relaykit.errors import InsufficientQuota
from relaykit.store import accounts, billing
from relaykit.store.migrations import MIGRATIONS
from relaykit.store.store import Store


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(f"sqlite:///{tmp_path}/t.db", cache_interval=0.05)
    s.migrate()
    s.start()
    yield s
    s.stop()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(store: Store) -> None:
    mode = store.tx(lambda t: t.db.execute_sql("PRAGMA journal_mode").fetchone()[0])
    timeout = store.tx(lambda t: t.db.execute_sql("PRAGMA busy_timeout").fetchone()[0])
    assert mode == "wal" and timeout >= 5000


def test_a_new_sqlite_database_gets_small_pages(store: Store) -> None:
    # every page a commit touches is written to the WAL whole: 1 KB pages cut the bytes
    # each request's two commits write (store/db.py)
    assert store.tx(lambda t: t.db.execute_sql("PRAGMA page_size").fetchone()[0]) == 1024


def test_an_existing_database_keeps_its_page_size_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as c:  # as an earlier relaykit created it: 4 KB pages, WAL
        c.execute("PRAGMA page_size=4096")
        c.execute("PRAGMA journal_mode=wal")
        c.execute("CREATE TABLE keep_me (a)")
    s = Store(f"sqlite:///{path}")
    s.migrate()
    s.start()
    try:
        user = s.tx(lambda t: accounts.create_user(t, "ann"))
        s.tx(lambda t: billing.topup(t, "ann", 1000))
        ticket = s.writer.call(partial(billing.place_hold, request_id="r1", user_id=user.id, token_id=None,
                                       token_limited=False, amount=300, model="m"))
        s.writer.call(lambda t: billing.settle_hold(t, ticket, 120, None))
        assert s.tx(lambda t: t.db.execute_sql("PRAGMA page_size").fetchone()[0]) == 4096
        assert s.tx(lambda t: t.User.get(t.User.name == "ann").balance) == 880
        assert all(a.ok for a in s.tx(billing.audit))
    finally:
        s.stop()


def test_migrations_are_recorded_and_idempotent(store: Store) -> None:
    assert store.migrate() == []
    names = store.tx(lambda t: [m.name for m in t.Migration.select().order_by(t.Migration.id)])
    assert names[0] == "initial schema" and names == [name for _, name, _ in MIGRATIONS]


def test_writer_commits_queued_operations_in_batches(store: Store) -> None:
    store.tx(lambda t: accounts.create_user(t, "u"))
    gate = threading.Event()
    blocker = store.writer.submit(lambda t: gate.wait(5))
    futures = [store.writer.submit(lambda t: billing.topup(t, "u", 1)) for _ in range(50)]
    commits_before = store.writer.commits
    gate.set()
    blocker.result(5)
    assert [f.result(5) for f in futures][-1] == 50
    # 50 operations queued behind the blocker land in very few transactions
    assert store.writer.commits - commits_before <= 3


def test_a_failing_operation_rolls_back_alone(store: Store) -> None:
    store.tx(lambda t: accounts.create_user(t, "u"))

    def broken(t):  # type: ignore[no-untyped-def]
        billing.topup(t, "u", 1000)
        raise RuntimeError("boom")

    bad = store.writer.submit(broken)
    good = store.writer.submit(lambda t: billing.topup(t, "u", 5))
    with pytest.raises(RuntimeError):
        bad.result(5)
    assert good.result(5) == 5
    assert all(a.ok for a in store.tx(billing.audit))


def test_hold_is_conditional_and_settlement_is_exact(store: Store) -> None:
    uid = store.tx(lambda t: accounts.create_user(t, "u").id)
    store.tx(lambda t: billing.topup(t, "u", 100))
    ticket = store.writer.call(lambda t: billing.place_hold(t, request_id="r1", user_id=uid, token_id=None,
                                                            token_limited=False, amount=80, model="m"))
    with pytest.raises(InsufficientQuota):
        store.writer.call(lambda t: billing.place_hold(t, request_id="r2", user_id=uid, token_id=None,
                                                       token_limited=False, amount=30, model="m"))
    assert store.tx(lambda t: accounts.user_row(t, "u").balance) == 20
    assert all(a.ok for a in store.tx(billing.audit))  # open hold counted
    store.writer.call(lambda t: billing.settle_hold(t, ticket, 35, None))
    # settling twice changes nothing
    assert store.writer.call(lambda t: billing.settle_hold(t, ticket, 35, None)) == 0
    assert store.tx(lambda t: accounts.user_row(t, "u").balance) == 65
    assert all(a.ok for a in store.tx(billing.audit))


def test_hold_and_settlement_alone_in_a_batch_commit_or_roll_back_whole(store: Store) -> None:
    """place_hold and settle_hold are flat: alone in a batch they run on the bare driver
    (writer._bare_transaction).  A hold refused half-way must undo its first statement and
    leave the connection ready for the next operation."""
    uid = store.tx(lambda t: accounts.create_user(t, "u").id)
    store.tx(lambda t: billing.topup(t, "u", 100))
    token = store.tx(lambda t: accounts.create_token(t, user_id=uid, name="small", quota=10, expires_at=None,
                                                     group=None, models=[], ips=[], rpm=None, tpm=None)[0])
    hold = partial(billing.place_hold, user_id=uid, token_id=token.id, token_limited=True, model="m")
    # the user's balance covers 30, the token's quota does not: the user update is undone
    with pytest.raises(InsufficientQuota, match="token's quota"):
        store.writer.call(partial(hold, request_id="r1", amount=30))
    assert store.tx(lambda t: accounts.user_row(t, "u").balance) == 100
    ticket = store.writer.call(partial(hold, request_id="r2", amount=8))
    assert store.tx(lambda t: (accounts.user_row(t, "u").balance, t.Token.get_by_id(token.id).remain_quota)) == (92, 2)
    assert store.writer.call(partial(billing.settle_hold, ticket=ticket, actual=5, log_row=None)) == 5
    assert store.tx(lambda t: (accounts.user_row(t, "u").balance, t.Token.get_by_id(token.id).remain_quota)) == (95, 5)
    assert [e["kind"] for e in store.tx(lambda t: billing.ledger_entries(t, uid))] == ["charge", "topup"]
    assert all(a.ok for a in store.tx(billing.audit))


def test_a_flat_operation_that_breaks_is_rolled_back_and_the_writer_goes_on(store: Store) -> None:
    uid = store.tx(lambda t: accounts.create_user(t, "u").id)
    store.tx(lambda t: billing.topup(t, "u", 100))
    ticket = store.writer.call(partial(billing.place_hold, request_id="r1", user_id=uid, token_id=None,
                                       token_limited=False, amount=40, model="m"))
    # a log row the table refuses (no request id): the insert fails after the money statements ran
    with pytest.raises(Exception, match="NOT NULL"):
        store.writer.call(partial(billing.settle_hold, ticket=ticket, actual=10, log_row={"request_id": None}))
    assert store.tx(lambda t: (accounts.user_row(t, "u").balance, t.Hold.select().count())) == (60, 1)
    assert store.writer.call(partial(billing.settle_hold, ticket=ticket, actual=10, log_row=None)) == 10
    assert store.tx(lambda t: (accounts.user_row(t, "u").balance, t.Hold.select().count())) == (90, 0)
    assert all(a.ok for a in store.tx(billing.audit))


def test_stale_holds_are_released_and_recorded(store: Store) -> None:
    uid = store.tx(lambda t: accounts.create_user(t, "u").id)
    store.tx(lambda t: billing.topup(t, "u", 100))
    store.writer.call(lambda t: billing.place_hold(t, request_id="crash", user_id=uid, token_id=None,
                                                   token_limited=False, amount=60, model="m"))
    assert store.tx(billing.release_stale_holds) == 1
    assert store.tx(lambda t: accounts.user_row(t, "u").balance) == 100
    kinds = [e["kind"] for e in store.tx(lambda t: billing.ledger_entries(t, uid))]
    assert kinds == ["release", "topup"]


def test_audit_finds_a_tampered_balance(store: Store) -> None:
    store.tx(lambda t: accounts.create_user(t, "u"))
    store.tx(lambda t: billing.topup(t, "u", 100))
    store.tx(lambda t: t.User.update(balance=999).execute())
    assert [a.user for a in store.tx(billing.audit) if not a.ok] == ["u"]


def test_token_plaintext_is_never_stored(store: Store, tmp_path: Path) -> None:
    uid = store.tx(lambda t: accounts.create_user(t, "u").id)
    _, key = store.tx(lambda t: accounts.create_token(t, user_id=uid, name="n", quota=None, expires_at=None,
                                                      group=None, models=[], ips=[], rpm=None, tpm=None))
    store.stop()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("t.db*"))
    assert key.encode() not in blob and key[3:].encode() not in blob
    assert accounts.hash_key(key).encode() in blob
    store.start()


def test_cache_sees_cli_changes_from_another_connection(store: Store, tmp_path: Path) -> None:
    import time
    uid = store.tx(lambda t: accounts.create_user(t, "u").id)
    row, key = store.tx(lambda t: accounts.create_token(t, user_id=uid, name="n", quota=None, expires_at=None,
                                                        group=None, models=[], ips=[], rpm=None, tpm=None))
    other = Store(store.url)  # what a CLI process does
    other.tx(lambda t: accounts.revoke_token(t, row.id))
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        found = store.cache.token(accounts.hash_key(key))
        if found and found[0].status == "revoked":
            return
        time.sleep(0.02)
    raise AssertionError("the cache did not reload within 2 seconds")


def test_migration_4_drops_the_hold_user_index_of_an_older_database(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path}/old.db")
    s.migrate()

    def as_before_4(t):  # type: ignore[no-untyped-def]
        t.db.execute_sql('CREATE INDEX "hold_user_id" ON "hold" ("user_id")')  # what migration 1 used to make
        t.Migration.delete().where(t.Migration.id == 4).execute()
    s.tx(as_before_4)

    def hold_indexes(t):  # type: ignore[no-untyped-def]
        return sorted(r[0] for r in t.db.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'hold'"))
    assert s.tx(hold_indexes) == ["hold_user_id"]
    assert s.migrate() == ["holds without a user index"]
    assert s.tx(hold_indexes) == []  # the key is the table itself (migration 6)


def test_migration_5_leaves_request_logs_one_index_that_the_user_pages_use(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path}/old.db")
    s.migrate()

    def as_before_5(t):  # type: ignore[no-untyped-def]
        t.db.execute_sql('DROP INDEX "request_log_user_id_created_at"')
        for col in ("request_id", "user_id", "created_at"):  # what migration 1 used to make
            t.db.execute_sql(f'CREATE INDEX "request_log_{col}" ON "request_log" ("{col}")')
        t.Migration.delete().where(t.Migration.id == 5).execute()
    s.tx(as_before_5)

    def log_indexes(t):  # type: ignore[no-untyped-def]
        return sorted(r[0] for r in t.db.execute_sql(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'request_log'"))
    assert len(s.tx(log_indexes)) == 3
    assert s.migrate() == ["request logs with one index"]
    assert s.tx(log_indexes) == ["request_log_user_id_created_at"]

    def plan(t):  # type: ignore[no-untyped-def]
        R = t.RequestLog
        sql, params = R.select().where((R.user_id == 1) & (R.created_at >= 0)).order_by(R.id.desc()).sql()
        return " ".join(str(r[-1]) for r in t.db.execute_sql("EXPLAIN QUERY PLAN " + sql, params))
    assert "request_log_user_id_created_at" in s.tx(plan)


def test_prune_takes_the_oldest_rows_in_batches_and_stops_at_the_first_recent_one(store: Store) -> None:
    import time

    from relaykit.store import logs as logs_repo
    now = time.time()

    def fill(t):  # type: ignore[no-untyped-def]
        for i, age_days in enumerate([30, 20, 10, 9, 1, 0]):
            t.RequestLog.create(request_id=f"r{i}", user_id=1, model="m", created_at=now - age_days * 86400)
    store.tx(fill)
    week = 7 * 86400
    assert store.tx(lambda t: logs_repo.prune(t, week, batch=2)) == 2
    assert store.tx(lambda t: logs_repo.prune(t, week, batch=2)) == 2
    assert store.tx(lambda t: logs_repo.prune(t, week, batch=2)) == 0
    left = store.tx(lambda t: [r.request_id for r in t.RequestLog.select().order_by(t.RequestLog.id)])
    assert left == ["r4", "r5"]


def test_migration_6_keys_holds_by_request_id_and_keeps_the_open_ones(tmp_path: Path) -> None:
    import sqlite3
    s = Store(f"sqlite:///{tmp_path}/old.db")
    s.migrate()
    uid = s.tx(lambda t: accounts.create_user(t, "ann").id)
    s.tx(lambda t: billing.topup(t, "ann", 1000))

    def as_before_6(t):  # type: ignore[no-untyped-def]
        # the hold table as migrations 1-5 left it: a rowid table with a unique index, and
        # one request in flight (its quota out of the balance)
        t.db.execute_sql('DROP TABLE "hold"')
        t.db.execute_sql('CREATE TABLE "hold" ("id" INTEGER NOT NULL PRIMARY KEY, "request_id" VARCHAR(64) NOT NULL, '
                         '"user_id" INTEGER NOT NULL, "token_id" INTEGER, "token_limited" INTEGER NOT NULL, '
                         '"amount" INTEGER NOT NULL, "model" VARCHAR(128) NOT NULL, "created_at" REAL NOT NULL, '
                         'FOREIGN KEY ("user_id") REFERENCES "user" ("id") ON DELETE CASCADE)')
        t.db.execute_sql('CREATE UNIQUE INDEX "hold_request_id" ON "hold" ("request_id")')
        t.db.execute_sql('INSERT INTO "hold" VALUES (7, ?, ?, NULL, 0, 300, ?, 1.0)', ("req-in-flight", uid, "m"))
        t.User.update(balance=t.User.balance - 300).where(t.User.id == uid).execute()
        t.Migration.delete().where(t.Migration.id == 6).execute()
    s.tx(as_before_6)
    assert s.migrate() == ["holds keyed by request id"]
    with sqlite3.connect(tmp_path / "old.db") as conn:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'hold'").fetchone()[0]
        assert "WITHOUT ROWID" in ddl and '"id" INTEGER' not in ddl
        assert conn.execute("SELECT request_id, user_id, amount FROM hold").fetchall() == [("req-in-flight", uid, 300)]
        assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'hold_%'").fetchall() == []
    assert all(line.ok for line in s.tx(billing.audit))  # balance 700 = ledger 1000 - the open 300
    # the hold settles as any other: by its request id, exactly once
    ticket = billing.HoldTicket("req-in-flight", uid, None, False, 300)
    assert s.tx(lambda t: billing.settle_hold(t, ticket, 120, None)) == 120
    assert s.tx(lambda t: billing.settle_hold(t, ticket, 120, None)) == 0
    assert s.tx(lambda t: accounts.user_row(t, "ann").balance) == 880
    assert all(line.ok for line in s.tx(billing.audit))


async def test_a_cancelled_wait_skips_a_queued_write_unless_it_must_run(store: Store) -> None:
    """A hold whose request is gone before the writer reaches it is skipped; a settlement
    (must_run) is committed though its request was cancelled while it waited."""
    import asyncio
    store.tx(lambda t: accounts.create_user(t, "u"))
    gate = threading.Event()
    blocker = store.writer.submit(lambda t: gate.wait(5))  # the writer is busy: both wait in its queue
    skipped = store.writer.submit_async(lambda t: billing.topup(t, "u", 1))
    kept = store.writer.submit_async(lambda t: billing.topup(t, "u", 10), must_run=True)
    skipped.cancel()
    kept.cancel()
    gate.set()
    blocker.result(5)
    done = store.writer.submit_async(lambda t: accounts.user_row(t, "u").balance)
    assert await asyncio.wait_for(done, 5) == 10  # queued after both, so both were decided
    assert kept.cancelled() and skipped.cancelled()
