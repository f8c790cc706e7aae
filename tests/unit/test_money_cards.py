"""Cards, check-in, refunds and adjustments at the repository level, on a real SQLite file:
code format and secrecy, the card key file, the exact SQL of the claim, and the
once-only rules that the unique ledger index backs up."""

from __future__ import annotations

import logging
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peewee as pw
import pytest

from relaykit.errors import CliError, InsufficientQuota, NotFoundError
from relaykit.settings import build_settings
from relaykit.store import accounts, billing, cards
from relaykit.store.store import Store

KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/money.db")
    s.migrate()
    yield s


def make_user(store: Store, name: str, quota: int = 0) -> int:
    def op(t: Any) -> int:
        u = accounts.create_user(t, name)
        if quota:
            billing.topup(t, name, quota)
        return int(u.id)
    return store.tx(op)


def audit_ok(store: Store) -> bool:
    return all(line.ok for line in store.tx(billing.audit))


# --------------------------------------------------------------------------- codes

def test_codes_are_long_random_and_grouped() -> None:
    codes = {cards.new_code("SHOP") for _ in range(2000)}
    assert len(codes) == 2000
    for code in list(codes)[:50]:
        assert re.fullmatch(r"SHOP-([0-9A-HJKMNP-TV-Z]{4}-){6}[0-9A-HJKMNP-TV-Z]{4}", code), code
    assert cards.CODE_SYMBOLS * 5 >= 128
    # every symbol position varies (no constant padding from the bit packing)
    bodies = [c[5:].replace("-", "") for c in codes]
    assert all(len({b[i] for b in bodies}) > 20 for i in range(cards.CODE_SYMBOLS))
    assert cards.new_code("RK-").startswith("RK-") and not cards.new_code("RK-").startswith("RK--")
    assert re.fullmatch(r"([0-9A-Z]{4}-){6}[0-9A-Z]{4}", cards.new_code(""))


def test_hash_ignores_case_spaces_and_dashes_but_needs_the_key() -> None:
    code = cards.new_code("Shop")
    h = cards.code_hash(KEY, code)
    assert cards.code_hash(KEY, code.lower()) == h
    assert cards.code_hash(KEY, " " + code.replace("-", " ") + "\n") == h
    assert cards.code_hash(KEY, code.replace("-", "")) == h
    assert cards.code_hash(bytes(32), code) != h
    assert cards.hint_of(code) == f"Shop-...{code[-4:]}"
    assert cards.hint_of(cards.new_code("")).startswith("...")


@pytest.mark.parametrize("prefix", ["", "SHOP", "shop_1", "RK-", "A" * 16])
def test_good_prefixes(prefix: str) -> None:
    cards.check_prefix(prefix)  # raises CliError on a bad prefix
    code = cards.new_code(prefix)
    assert code.upper().startswith(prefix.upper().rstrip("-")) and len(code) > len(prefix)


@pytest.mark.parametrize("prefix", ["A" * 17, "a b", "x/y", "é", "--", "a-b-"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(CliError):
        cards.check_prefix(prefix)


# --------------------------------------------------------------------------- the card key

def test_card_key_is_created_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "r.cardkey"
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda: got.append(cards.load_card_key(path))) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(set(got)) == 1 and len(got[0]) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["r.cardkey"]  # no temporary files left behind
    path.write_text("garbage\n")
    with pytest.raises(CliError, match="damaged"):
        cards.load_card_key(path)


def test_card_key_lives_beside_the_sqlite_file_or_where_configured(tmp_path: Path) -> None:
    s = build_settings({"database": {"url": f"sqlite:///{tmp_path}/data/relaykit.db"}}, {}, path="x.yaml")
    assert cards.card_key_path(s) == tmp_path / "data" / "relaykit.cardkey"
    s = build_settings({"accounts": {"card_key_file": str(tmp_path / "k")}}, {}, path="x.yaml")
    assert cards.card_key_path(s) == tmp_path / "k"
    s = build_settings({"database": {"url": "postgresql://u@h/db"}}, {}, path="x.yaml")
    assert cards.card_key_path(s).name == "relaykit.cardkey"


def test_new_settings_are_validated() -> None:
    s = build_settings({"billing": {"timezone": "Mars/Olympus", "checkin": {"min_usd": 2, "max_usd": 1}},
                        "accounts": {"session_days": 0, "nope": 1}}, {}, path="x.yaml")
    text = " ".join(p.message for p in s.errors)
    assert "Mars/Olympus" in text and "min_usd" in text and "session_days" in text and "'nope'" in text
    ok = build_settings({"billing": {"timezone": "Asia/Shanghai"},
                         "accounts": {"self_registration": True, "session_days": 2}}, {}, path="x.yaml")
    assert not ok.errors and ok.billing.timezone == "Asia/Shanghai"
    assert ok.accounts.self_registration and ok.accounts.session_days == 2
    default = build_settings({}, {}, path="x.yaml")
    assert default.accounts.self_registration is False and default.billing.timezone is None


# --------------------------------------------------------------------------- secrecy

def test_the_database_file_holds_no_code(store: Store, tmp_path: Path) -> None:
    uid = make_user(store, "alice")
    codes = store.tx(lambda t: cards.issue(t, KEY, amount=100, count=300, prefix="SHOP", expires_at=None, batch="b"))
    store.tx(lambda t: cards.redeem(t, KEY, codes[0], uid))
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("money.db"))
    for code in codes:
        for form in (code, code.replace("-", ""), code.split("-", 1)[1]):
            assert form.encode() not in raw
    assert b"SHOP-..." in raw  # the hints are there, which is the point of them


# --------------------------------------------------------------------------- redemption

def test_the_claim_is_one_conditional_update_before_the_credit(store: Store,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    uid = make_user(store, "alice")
    (code,) = store.tx(lambda t: cards.issue(t, KEY, amount=500, count=1, prefix="", expires_at=None, batch="b"))
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        store.tx(lambda t: cards.redeem(t, KEY, code, uid, at=1000.0))
    sql = [r.getMessage() for r in caplog.records if r.name == "peewee"]
    writes = [q for q in sql if q.lstrip("('").upper().startswith(("UPDATE", "INSERT"))]
    claim = writes[0]
    assert claim.lstrip("('").startswith('UPDATE "card" SET "status" = ?'), claim
    assert '"status" = ?' in claim.split("WHERE")[1] and '"expires_at" IS NULL' in claim
    assert '"expires_at" > ?' in claim and "'unused'" in claim and "1000.0" in claim
    assert writes[1].lstrip("('").startswith('UPDATE "user" SET "balance"')
    assert writes[2].lstrip("('").startswith('INSERT INTO "ledger"')
    assert len(writes) == 3


def test_redeem_refusals_change_nothing(store: Store) -> None:
    uid = make_user(store, "alice")
    codes = store.tx(lambda t: cards.issue(t, KEY, amount=500, count=3, prefix="", expires_at=2000.0, batch="b"))
    with pytest.raises(cards.CardNotFound):
        store.tx(lambda t: cards.redeem(t, KEY, "NOT-A-CODE", uid, at=1000.0))
    with pytest.raises(cards.CardNotFound):
        store.tx(lambda t: cards.redeem(t, KEY, "x" * 500, uid, at=1000.0))
    with pytest.raises(cards.CardUnavailable, match="expired"):
        store.tx(lambda t: cards.redeem(t, KEY, codes[0], uid, at=2000.0))
    store.tx(lambda t: cards.void(t, KEY, codes[1]))
    with pytest.raises(cards.CardUnavailable, match="voided"):
        store.tx(lambda t: cards.redeem(t, KEY, codes[1], uid, at=1000.0))
    with pytest.raises(NotFoundError):  # the customer vanished: the claim is rolled back with the rest
        store.tx(lambda t: cards.redeem(t, KEY, codes[2], 999, at=1000.0))
    assert store.tx(lambda t: t.Card.get_by_id(3).status) == "unused"
    got = store.tx(lambda t: cards.redeem(t, KEY, codes[2], uid, at=1000.0))
    assert (got.amount, got.balance) == (500, 500)
    with pytest.raises(cards.CardUnavailable, match="already been redeemed"):
        store.tx(lambda t: cards.redeem(t, KEY, codes[2], uid, at=1000.0))
    assert store.tx(lambda t: accounts.user_row(t, "alice").balance) == 500 and audit_ok(store)


def test_the_unique_ledger_reference_stops_a_second_credit(store: Store) -> None:
    uid = make_user(store, "alice")
    (code,) = store.tx(lambda t: cards.issue(t, KEY, amount=500, count=1, prefix="", expires_at=None, batch="b"))
    done = store.tx(lambda t: cards.redeem(t, KEY, code, uid))
    with pytest.raises(pw.IntegrityError):  # what a slip that skipped the claim would hit
        store.tx(lambda t: t.Ledger.create(user=uid, kind="card", amount=500, request_id=f"card:{done.card_id}"))


def test_void_and_list(store: Store) -> None:
    uid = make_user(store, "alice")
    now = time.time()
    codes = store.tx(lambda t: cards.issue(t, KEY, amount=250_000, count=4, prefix="", expires_at=None, batch="b"))
    store.tx(lambda t: t.Card.update(expires_at=now - 5).where(t.Card.id == 4).execute())
    store.tx(lambda t: cards.redeem(t, KEY, codes[0], uid))
    assert store.tx(lambda t: cards.void(t, KEY, "2")).status == "void"  # by ID from `card list`
    with pytest.raises(cards.CardUnavailable, match="already void"):
        store.tx(lambda t: cards.void(t, KEY, codes[1]))
    with pytest.raises(cards.CardUnavailable, match="used"):
        store.tx(lambda t: cards.void(t, KEY, codes[0]))
    with pytest.raises(cards.CardNotFound):
        store.tx(lambda t: cards.void(t, KEY, "NOPE"))

    def ids(status: str | None) -> list[int]:
        return [r["id"] for r in store.tx(lambda t: cards.list_cards(t, status=status, quota_per_usd=500_000))]

    assert ids(None) == [4, 3, 2, 1]
    assert (ids("unused"), ids("used"), ids("void"), ids("expired")) == ([3], [1], [2], [4])
    row = store.tx(lambda t: cards.list_cards(t, status="used", quota_per_usd=500_000))[0]
    assert row["used_by"] == "alice" and row["amount_usd"] == 0.5 and row["hint"].startswith("...")
    with pytest.raises(CliError):
        store.tx(lambda t: cards.list_cards(t, status="lost", quota_per_usd=1))


# --------------------------------------------------------------------------- check-in, refund, adjust

def test_checkin_once_per_user_and_day(store: Store) -> None:
    a, b = make_user(store, "a"), make_user(store, "b")
    assert store.tx(lambda t: billing.checkin(t, a, "2026-01-01", 70)) == 70
    with pytest.raises(billing.AlreadyDone):
        store.tx(lambda t: billing.checkin(t, a, "2026-01-01", 70))
    assert store.tx(lambda t: billing.checkin(t, b, "2026-01-01", 30)) == 30
    assert store.tx(lambda t: billing.checkin(t, a, "2026-01-02", 5)) == 75
    assert audit_ok(store)


def charge(store: Store, uid: int, hold: int, actual: int, request_id: str) -> None:
    def op(t: Any) -> None:
        ticket = billing.place_hold(t, request_id=request_id, user_id=uid, token_id=None, token_limited=False,
                                    amount=hold, model="m")
        billing.settle_hold(t, ticket, actual, None)
    store.tx(op)


def test_refunds_are_clamped_and_happen_once(store: Store) -> None:
    uid = make_user(store, "a", quota=1000)
    charge(store, uid, 400, 300, "r1")
    assert store.tx(lambda t: billing.refund(t, "r1", 10_000)) == 300  # never more than was charged
    with pytest.raises(billing.AlreadyDone):
        store.tx(lambda t: billing.refund(t, "r1", 1))
    with pytest.raises(NotFoundError):
        store.tx(lambda t: billing.refund(t, "never-charged"))
    charge(store, uid, 100, 80, "r2")
    assert store.tx(lambda t: billing.refund(t, "r2", 30)) == 30
    with pytest.raises(billing.InvalidRefund):
        store.tx(lambda t: billing.refund(t, "r2", 0))
    u = store.tx(lambda t: accounts.user_row(t, "a"))
    assert u.balance == 1000 - 80 + 30 and u.used_quota == 300 + 80 - 300 - 30
    assert audit_ok(store)


def test_adjust_never_overdraws(store: Store) -> None:
    make_user(store, "a", quota=100)
    assert store.tx(lambda t: billing.adjust(t, "a", -60, note="correction")) == 40
    with pytest.raises(InsufficientQuota):
        store.tx(lambda t: billing.adjust(t, "a", -41, note="too much"))
    assert store.tx(lambda t: billing.adjust(t, "a", 10, note="goodwill")) == 50
    assert audit_ok(store)


def test_sessions_are_hashed_expire_and_revoke(store: Store) -> None:
    from relaykit.store import sessions
    uid = make_user(store, "a")
    token, expires = store.tx(lambda t: sessions.create_session(t, uid, lifetime=60))
    assert token.startswith("rks-") and expires > time.time()
    assert store.tx(lambda t: sessions.session_user(t, token)).name == "a"
    assert store.tx(lambda t: sessions.session_user(t, token, time.time() + 61)) is None
    assert store.tx(lambda t: sessions.session_user(t, token + "x")) is None
    assert store.tx(lambda t: sessions.revoke_sessions(t, uid)) == 1
    assert store.tx(lambda t: sessions.session_user(t, token)) is None
    assert store.tx(lambda t: [s.token_hash for s in t.Session.select()]) == [sessions.hash_session(token)]
