"""``relaykit db copy`` moves a SQLite install to PostgreSQL, ledger and all, and proves it;
``relaykit db backup`` works on PostgreSQL too (pg_dump)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest

from relaykit.cli.app import main
from relaykit.store import accounts, billing
from relaykit.store.store import Store

from .cluster_support import PgDatabases, pg_databases, pg_url  # noqa: F401  (fixtures)

USERS = 40
CHARGES_PER_USER = 249  # with one topup each: 40 * 250 = 10 000 ledger entries


def _fill(store: Store) -> dict[str, int]:
    """40 customers, each topped up once and charged 249 times through the real hold and
    settlement (with request-log rows); two holds left open and one card redeemed."""
    def fill(t: Any) -> None:
        for u in range(USERS):
            name = f"user{u:02d}"
            user = accounts.create_user(t, name, group="vip" if u % 3 == 0 else "default")
            accounts.create_token(t, user_id=user.id, name="main", quota=None if u % 2 else 10**9,
                                  expires_at=None, group=None, models=[], ips=[], rpm=None, tpm=None)
            billing.topup(t, name, 10**8, note="opening balance")
            token_id = t.Token.get(t.Token.user == user.id).id
            for i in range(CHARGES_PER_USER):
                rid = f"{name}-{i}"
                ticket = billing.place_hold(t, request_id=rid, user_id=user.id, token_id=token_id,
                                            token_limited=u % 2 == 0, amount=5000, model="mock-gpt")
                billing.settle_hold(t, ticket, 1000 + (i * 37 + u) % 3000, {
                    "request_id": rid, "user_id": user.id, "token_id": token_id, "token_name": "main",
                    "model": "mock-gpt", "channel": "local-mock", "prompt_tokens": i, "completion_tokens": u,
                    "quota": 1000, "status": 200})
        for u in (3, 7):  # requests in flight at the moment of the copy
            billing.place_hold(t, request_id=f"open-{u}", user_id=u + 1, token_id=None, token_limited=False,
                               amount=777, model="mock-gpt")
    store.tx(fill)
    return {a.user: a.balance for a in store.tx(billing.audit)}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def test_copy_of_a_sqlite_install_with_10000_ledger_entries_audits_on_postgresql(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    sqlite_url = f"sqlite:///{tmp_path / 'relaykit.db'}"
    source = Store(sqlite_url)
    source.migrate()
    balances = _fill(source)
    assert source.tx(lambda t: t.Ledger.select().count()) == USERS * (CHARGES_PER_USER + 1) == 10_000

    code, out, err = _cli(capsys, "db", "copy", "--from", sqlite_url, "--to", pg_url, "--json")
    assert code == 0, err
    report = orjson.loads(out)
    assert report["ok"] and report["source_audit_ok"] and report["target_audit_ok"]
    assert report["balances_match"] and report["counts_match"] and report["users"] == USERS
    assert report["tables"]["ledger"] == 10_000 and report["tables"]["hold"] == 2
    assert report["tables"]["request_log"] == USERS * CHARGES_PER_USER

    target = Store(pg_url)
    lines = target.tx(billing.audit)
    assert all(a.ok for a in lines)
    assert {a.user: a.balance for a in lines} == balances  # one for one
    assert {a.user: a.open_holds for a in lines if a.open_holds} == {"user03": 777, "user07": 777}
    # every row came over unchanged: compare the ledgers and the tokens field by field
    def dump(t: Any) -> tuple[list[Any], list[Any]]:
        ledger = list(t.Ledger.select().order_by(t.Ledger.id).tuples())
        tokens = list(t.Token.select().order_by(t.Token.id).tuples())
        return ledger, tokens
    assert target.tx(dump) == source.tx(dump)
    # the sequences moved past the copied ids: new rows get fresh ids
    new_id = target.tx(lambda t: accounts.create_user(t, "newcomer").id)
    assert new_id == USERS + 1
    target.tx(partial(billing.topup, user_name="newcomer", amount=5))
    assert all(a.ok for a in target.tx(billing.audit))

    # a second copy onto the now non-empty target is refused, and changes nothing
    code, _, err = _cli(capsys, "db", "copy", "--from", sqlite_url, "--to", pg_url)
    assert code == 1 and "not empty" in err
    assert target.tx(lambda t: t.Ledger.select().count()) == 10_001
    target.close()
    source.close()


def test_copy_back_from_postgresql_to_sqlite_and_refusals(tmp_path: Path, pg_databases: PgDatabases,  # noqa: F811
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    pg = pg_databases.new()
    s = Store(pg)
    s.migrate()
    s.tx(lambda t: (accounts.create_user(t, "ann"), billing.topup(t, "ann", 1234)))
    s.close()
    back = f"sqlite:///{tmp_path / 'back.db'}"
    code, out, err = _cli(capsys, "db", "copy", "--from", pg, "--to", back, "--json")
    assert code == 0, err
    assert orjson.loads(out)["ok"]
    assert Store(back).tx(lambda t: t.User.get(t.User.name == "ann").balance) == 1234
    code, _, err = _cli(capsys, "db", "copy", "--from", back, "--to", back)
    assert code == 1 and "same database" in err
    code, _, err = _cli(capsys, "db", "copy", "--from", back, "--to", "mysql://x/y")
    assert code == 1 and "not a database URL" in err


@pytest.mark.skipif(shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
                    reason="pg_dump/pg_restore (postgresql-client) are not installed")
def test_backup_of_postgresql_uses_pg_dump(tmp_path: Path, pg_url: str,  # noqa: F811
                                           capsys: pytest.CaptureFixture[str]) -> None:
    s = Store(pg_url)
    s.migrate()
    s.tx(lambda t: (accounts.create_user(t, "bea"), billing.topup(t, "bea", 99)))
    s.close()
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text(f'database: {{url: "{pg_url}"}}\n', encoding="utf-8")
    dump = tmp_path / "relaykit.dump"
    code, out, err = _cli(capsys, "db", "backup", str(dump), "--config", str(cfg), "--json")
    assert code == 0, err
    assert orjson.loads(out)["format"] == "pg_dump" and dump.stat().st_size > 0
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True)
    assert "TABLE DATA public ledger" in listing.stdout
    code, _, err = _cli(capsys, "db", "backup", str(dump), "--config", str(cfg))
    assert code == 1 and "already exists" in err


def test_db_migrate_upgrades_postgresql(tmp_path: Path, pg_url: str,  # noqa: F811
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from relaykit.store.migrations import MIGRATIONS
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text(f'database: {{url: "{pg_url}"}}\n', encoding="utf-8")
    code, out, err = _cli(capsys, "db", "migrate", "--config", str(cfg), "--json")
    assert code == 0, err
    assert orjson.loads(out) == {"applied": [name for _, name, _ in MIGRATIONS], "pending": []}
    code, out, _ = _cli(capsys, "db", "migrate", "--config", str(cfg), "--json")
    assert code == 0 and orjson.loads(out) == {"applied": [], "pending": []}
    code, out, _ = _cli(capsys, "audit", "--config", str(cfg), "--json")
    assert code == 0 and orjson.loads(out) == {"ok": True, "users": []}


def test_copy_of_an_old_sqlite_install_to_a_new_file_gets_small_pages(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # the way README gives an operator to move a 4 KB-page database to 1 KB pages
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as c:
        c.execute("PRAGMA page_size=4096")
        c.execute("PRAGMA journal_mode=wal")
    source = Store(f"sqlite:///{old}")
    source.migrate()
    source.tx(lambda t: (accounts.create_user(t, "ann"), billing.topup(t, "ann", 4321)))
    source.close()
    new = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, err = _cli(capsys, "db", "copy", "--from", f"sqlite:///{old}", "--to", new, "--json")
    assert code == 0, err
    assert orjson.loads(out)["ok"]
    with sqlite3.connect(tmp_path / "new.db") as c:
        assert c.execute("PRAGMA page_size").fetchone()[0] == 1024
    with sqlite3.connect(old) as c:
        assert c.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert Store(new).tx(lambda t: t.User.get(t.User.name == "ann").balance) == 4321
