"""relaykit card issue|redeem|list|void, user passwd|logout; concurrent CLI processes
redeeming one card."""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.cli.cli_support import QUOTA_PER_USD, Env, assert_one_line_error, seed_user, subprocess_env

from relaykit.cli.app import main
from relaykit.settings import load_settings
from relaykit.store import accounts, cards, sessions

CODE = re.compile(r"^(?:[A-Za-z0-9_]+-)?([0-9A-HJKMNP-TV-Z]{4}-){6}[0-9A-HJKMNP-TV-Z]{4}$")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["code", "amount_usd", "expires_at"]
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_issue_writes_a_private_csv_and_stores_no_code(cli, env: Env) -> None:
    out = env.dir / "cards.csv"
    r = cli("card", "issue", "--amount", "2.5", "--count", "25", "--prefix", "SHOP", "--expires", "90d",
            "--out", out, "--config", env.config)
    assert r.code == 0, r.err
    assert "Issued 25 card(s) of $2.5" in r.out and str(out) in r.out
    rows = read_csv(out)
    assert len(rows) == 25 and len({r["code"] for r in rows}) == 25
    assert all(CODE.match(r["code"]) and r["code"].startswith("SHOP-") for r in rows)
    assert {r["amount_usd"] for r in rows} == {"2.5"}
    expires = {r["expires_at"] for r in rows}
    assert len(expires) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires.pop())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    raw = b"".join(p.read_bytes() for p in env.dir.iterdir() if p.name.startswith(env.db.name))
    assert not any(r["code"].encode() in raw for r in rows)
    assert env.sql("SELECT COUNT(*), MIN(amount), MAX(status) FROM card") == [(25, int(2.5 * QUOTA_PER_USD), "unused")]
    key_file = env.db.with_suffix(".cardkey")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # the file is never overwritten
    again = cli("card", "issue", "--amount", "1", "--out", out, "--config", env.config)
    assert again.code == 1 and "already exists" in again.err
    assert env.sql("SELECT COUNT(*) FROM card") == [(25,)]


def test_issue_to_stdout_and_json(cli, env: Env) -> None:
    r = cli("card", "issue", "--amount", "1", "--count", "3", "--config", env.config)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0] == "code,amount_usd,expires_at" and len(lines) == 4
    assert all(CODE.match(line.split(",")[0]) and line.endswith(",1,") for line in lines[1:])
    r = cli("card", "issue", "--amount", "0.5", "--count", "2", "--json", "--config", env.config)
    assert r.code == 0, r.err
    got = r.json
    assert got["count"] == 2 and got["amount_usd"] == "0.5" and got["amount_quota"] == QUOTA_PER_USD // 2
    assert [c["expires_at"] for c in got["cards"]] == [None, None] and all(CODE.match(c["code"]) for c in got["cards"])


@pytest.mark.parametrize(("args", "needle"), [
    (("--amount", "0"), "positive"),
    (("--amount", "lots"), "not a number"),
    (("--amount", "1", "--count", "0"), "--count"),
    (("--amount", "1", "--count", "100001"), "--count"),
    (("--amount", "1", "--prefix", "bad prefix"), "prefix"),
    (("--amount", "1", "--expires", "soon"), "not understood"),
    (("--amount", "1", "--out", "/no/such/dir/c.csv"), "cannot be created"),
])
def test_bad_issue_is_one_line_error(cli, env: Env, args: tuple[str, ...], needle: str) -> None:
    r = cli("card", "issue", *args, "--config", env.config)
    assert r.code != 0
    assert_one_line_error(r.err, needle)
    assert not env.db.exists() or env.sql("SELECT COUNT(*) FROM card") == [(0,)]


def issue(cli, env: Env, count: int = 1, amount: str = "1", *extra: str) -> list[str]:
    r = cli("card", "issue", "--amount", amount, "--count", count, "--json", *extra, "--config", env.config)
    assert r.code == 0, r.err
    return [c["code"] for c in r.json["cards"]]


def test_redeem_list_and_void(cli, env: Env, wide) -> None:
    store = env.store()
    seed_user(store, "alice")
    a, b, c = issue(cli, env, 3, "2")
    r = cli("card", "redeem", a.lower(), "--user", "alice", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json["added_quota"] == 2 * QUOTA_PER_USD and r.json["quota"] == 2 * QUOTA_PER_USD
    assert r.json["card"].endswith(a[-4:]) and a not in r.out
    r = cli("card", "redeem", a, "--user", "alice", "--config", env.config)
    assert r.code == 1
    assert_one_line_error(r.err, "already been redeemed")
    r = cli("card", "redeem", "NOPE-NOPE", "--user", "alice", "--config", env.config)
    assert_one_line_error(r.err, "not valid")
    r = cli("card", "redeem", b, "--user", "nobody", "--config", env.config)
    assert_one_line_error(r.err, "no user named 'nobody'")
    r = cli("card", "void", c, "--config", env.config)
    assert r.code == 0 and "is now void" in r.out
    r = cli("card", "void", "1", "--config", env.config)
    assert_one_line_error(r.err, "used", "cannot be voided")
    r = cli("card", "redeem", c, "--user", "alice", "--config", env.config)
    assert_one_line_error(r.err, "voided")

    r = cli("card", "list", "--json", "--config", env.config)
    assert [(x["id"], x["status"], x["used_by"]) for x in r.json] == [(3, "void", None), (2, "unused", None),
                                                                     (1, "used", "alice")]
    assert all(x["amount_usd"] == 2 for x in r.json) and not any(a in x["hint"] for x in r.json)
    assert [x["id"] for x in cli("card", "list", "--status", "unused", "--json", "--config", env.config).json] == [2]
    assert cli("card", "list", "--status", "expired", "--json", "--config", env.config).json == []
    env.sql("UPDATE card SET expires_at = 1 WHERE id = 2")
    assert [x["id"] for x in cli("card", "list", "--status", "expired", "--json", "--config", env.config).json] == [2]
    r = cli("card", "list", "--config", env.config)
    assert r.code == 0 and "alice" in r.out and "expired" in r.out and "void" in r.out
    r = cli("card", "list", "--status", "lost", "--config", env.config)
    assert_one_line_error(r.err, "--status must be one of unused, used, expired, void")

    r = cli("user", "show", "alice", "--json", "--config", env.config)
    assert [(e["kind"], e["request_id"]) for e in r.json["ledger"]] == [("card", "card:1")]
    assert cli("audit", "--config", env.config).code == 0


def test_ten_thousand_cards_in_seconds(cli, env: Env) -> None:
    out = env.dir / "big.csv"
    started = time.perf_counter()
    r = cli("card", "issue", "--amount", "5", "--count", "10000", "--prefix", "BULK", "--out", out,
            "--config", env.config)
    took = time.perf_counter() - started
    assert r.code == 0, r.err
    rows = read_csv(out)
    assert len({r["code"] for r in rows}) == 10_000
    assert env.sql("SELECT COUNT(DISTINCT code_hash) FROM card") == [(10_000,)]
    print(f"10 000 cards issued in {took:.2f} s")
    assert took < 30, took  # a few seconds on a quiet machine; generous for a busy CI box


# --------------------------------------------------------------------------- concurrent processes

def _redeem_in_child(args: list[str], barrier: Any) -> None:
    barrier.wait(30)
    code = main(args)
    os._exit(code)


def seed_users_and_card(env: Env, names: list[str], usd: int) -> str:
    """Customers in one transaction and one card under the card key the CLI will use."""
    store = env.store()
    key = cards.load_card_key(cards.card_key_path(load_settings(env.config)))

    def op(t: Any) -> str:
        for name in names:
            accounts.create_user(t, name)
        return cards.issue(t, key, amount=usd * QUOTA_PER_USD, count=1, prefix="", expires_at=None, batch="race")[0]

    return store.tx(op)


def test_fifty_concurrent_cli_processes_redeem_once(env: Env) -> None:
    code = seed_users_and_card(env, [f"u{i}" for i in range(50)], 3)
    # forked children run the real entry point (main) as `relaykit card redeem` would; fork keeps
    # 50 processes cheap, each opens its own connection and races the others for the card
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(50)
    procs = [ctx.Process(target=_redeem_in_child, args=(["card", "redeem", code, "--user", f"u{i}", "--config",
                                                         str(env.config)], barrier)) for i in range(50)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    codes = sorted(p.exitcode for p in procs)
    assert codes == [0] + [1] * 49, codes
    rows = env.sql("SELECT u.name, u.balance FROM user u WHERE u.balance != 0")
    assert len(rows) == 1 and rows[0][1] == 3 * QUOTA_PER_USD
    assert env.sql("SELECT COUNT(*) FROM ledger WHERE kind = 'card'") == [(1,)]
    assert env.sql("SELECT status, used_by IS NOT NULL FROM card") == [("used", 1)]


def test_real_relaykit_processes_race_for_one_card(env: Env) -> None:
    code = seed_users_and_card(env, ["p0", "p1", "p2"], 1)
    procs = [subprocess.Popen([sys.executable, "-m", "relaykit", "card", "redeem", code, "--user", f"p{i}",
                               "--config", str(env.config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=subprocess_env()) for i in range(3)]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in results) == [0, 1, 1]
    for rc, out, err in results:
        if rc:
            assert_one_line_error(err, "already been redeemed")
        else:
            assert "Redeemed card 1" in out
    assert env.sql("SELECT SUM(balance) FROM user") == [(QUOTA_PER_USD,)]


# --------------------------------------------------------------------------- passwords and sessions

def test_passwd_reads_a_piped_line_and_ends_sessions(cli, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    store = env.store()
    uid = seed_user(store, "alice")
    store.tx(lambda t: sessions.create_session(t, uid, lifetime=600))
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret-enough\n"))
    r = cli("user", "passwd", "alice", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json == {"name": "alice", "sessions_ended": 1}
    [(pw_hash,)] = env.sql('SELECT password_hash FROM "user" WHERE name = ?', ("alice",))
    assert accounts.verify_password("s3cret-enough", pw_hash) and "s3cret" not in pw_hash
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    r = cli("user", "passwd", "alice", "--config", env.config)
    assert_one_line_error(r.err, "at least 8 characters")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    r = cli("user", "passwd", "alice", "--config", env.config)
    assert_one_line_error(r.err, "No password was given")
    r = cli("user", "passwd", "nobody", "--config", env.config)
    assert_one_line_error(r.err, "no user named 'nobody'")
    assert env.sql('SELECT password_hash FROM "user" WHERE name = ?', ("alice",)) == [(pw_hash,)]


def test_logout_ends_every_live_session(cli, env: Env) -> None:
    store = env.store()
    uid = seed_user(store, "alice")
    other = seed_user(store, "bob")
    tokens = [store.tx(lambda t: sessions.create_session(t, uid, lifetime=600)[0]) for _ in range(3)]
    bob = store.tx(lambda t: sessions.create_session(t, other, lifetime=600)[0])
    r = cli("user", "logout", "alice", "--config", env.config)
    assert r.code == 0 and "Ended 3 session(s) of 'alice'." in r.out
    assert all(store.tx(lambda t, tok=tok: sessions.session_user(t, tok)) is None for tok in tokens)
    assert store.tx(lambda t: sessions.session_user(t, bob)).name == "bob"
    r = cli("user", "logout", "alice", "--json", "--config", env.config)
    assert r.json == {"name": "alice", "sessions_ended": 0}
    assert_one_line_error(cli("user", "logout", "ghost", "--config", env.config).err, "no user named 'ghost'")


def test_user_create_with_password_dash_reads_it(cli, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("typed-not-argv\n"))
    r = cli("user", "create", "carol", "--password", "-", "--config", env.config)
    assert r.code == 0, r.err
    [(pw_hash,)] = env.sql('SELECT password_hash FROM "user" WHERE name = ?', ("carol",))
    assert accounts.verify_password("typed-not-argv", pw_hash)
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    r = cli("user", "create", "dave", "--password", "-", "--config", env.config)
    assert_one_line_error(r.err, "at least 8 characters")
    assert env.sql('SELECT COUNT(*) FROM "user" WHERE name = ?', ("dave",)) == [(0,)]


def test_adjust_credits_debits_and_never_overdraws(cli, env: Env) -> None:
    seed_user(env.store(), "alice", usd=2)
    r = cli("user", "adjust", "alice", "0.5", "--note", "goodwill", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json["quota"] == int(2.5 * QUOTA_PER_USD)
    r = cli("user", "adjust", "alice", "--note", "double charge fixed", "--config", env.config, "--", "-1.25")
    assert r.code == 0, r.err
    assert "by -$1.250000" in r.out and "$1.250000" in r.out
    r = cli("user", "adjust", "alice", "--note", "too much", "--config", env.config, "--", "-5")
    assert_one_line_error(r.err, "smaller than the debit")
    r = cli("user", "adjust", "alice", "1", "--note", " ", "--config", env.config)
    assert_one_line_error(r.err, "--note")
    ledger = cli("user", "show", "alice", "--json", "--config", env.config).json["ledger"]
    assert [(e["kind"], e["amount"], e["note"]) for e in ledger[:2]] == [
        ("adjust", -int(1.25 * QUOTA_PER_USD), "double charge fixed"), ("adjust", QUOTA_PER_USD // 2, "goodwill")]
    assert cli("audit", "--config", env.config).code == 0
