"""relaykit user create|list|show|topup|disable|enable"""

from __future__ import annotations

import pytest
from tests.cli.cli_support import QUOTA_PER_USD, assert_one_line_error, seed_user

from relaykit.store.accounts import verify_password


def test_create_list_show(cli, env) -> None:
    r = cli("user", "create", "alice", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json["name"] == "alice" and r.json["group"] == "default" and r.json["role"] == "customer"
    assert r.json["quota"] == 0 and r.json["status"] == "active"
    r = cli("user", "create", "bob", "--group", "vip", "--admin", "--password", "hunter22", "--config", env.config)
    assert r.code == 0, r.err
    assert "Created user 'bob' in group 'vip'." in r.out

    r = cli("user", "list", "--json", "--config", env.config)
    assert r.code == 0
    assert [(u["name"], u["group"], u["role"], u["status"]) for u in r.json] == [
        ("alice", "default", "customer", "active"), ("bob", "vip", "admin", "active")]

    r = cli("user", "show", "alice", "--json", "--config", env.config)
    assert r.code == 0
    info = r.json
    assert {"name", "group", "quota", "usd", "status", "ledger"} <= set(info)
    assert (info["name"], info["group"], info["quota"], info["usd"], info["status"], info["ledger"]) == (
        "alice", "default", 0, 0, "active", [])

    [(pw_hash,)] = env.sql('SELECT password_hash FROM "user" WHERE name = ?', ("bob",))
    assert "hunter22" not in pw_hash and verify_password("hunter22", pw_hash)
    assert env.sql('SELECT password_hash FROM "user" WHERE name = ?', ("alice",)) == [(None,)]


def test_user_list_text(cli, env, wide) -> None:
    r = cli("user", "list", "--config", env.config)
    assert r.code == 0 and "No users yet." in r.out
    cli("user", "create", "alice", "--config", env.config)
    r = cli("user", "list", "--config", env.config)
    assert r.code == 0
    assert "alice" in r.out and "default" in r.out and "active" in r.out


def test_duplicate_user_is_one_line_error(cli, env) -> None:
    assert cli("user", "create", "alice", "--config", env.config).code == 0
    r = cli("user", "create", "alice", "--config", env.config)
    assert r.code == 1
    assert_one_line_error(r.err, "'alice'", "already exists")
    assert len(cli("user", "list", "--json", "--config", env.config).json) == 1


@pytest.mark.parametrize(("args", "needle"), [
    (("user", "create", "carol", "--group", "gold"), "no group 'gold'"),
    (("user", "create", "two words"), "without spaces"),
])
def test_bad_user_create_is_one_line_error(cli, env, args, needle) -> None:
    r = cli(*args, "--config", env.config)
    assert r.code == 1
    assert_one_line_error(r.err, needle)
    assert cli("user", "list", "--json", "--config", env.config).json == []


def test_topup_adds_exactly_usd_times_quota_per_usd_with_a_ledger_entry(cli, env) -> None:
    cli("user", "create", "alice", "--config", env.config)
    r = cli("user", "topup", "alice", "1.5", "--json", "--config", env.config)
    assert r.code == 0, r.err
    expected = 1_500_000
    assert expected == int(1.5 * QUOTA_PER_USD)
    assert r.json == {"name": "alice", "added_quota": expected, "quota": expected, "usd": 1.5}
    r = cli("user", "topup", "alice", "0.25", "--note", "invoice 7", "--config", env.config)
    assert r.code == 0, r.err
    assert "alice" in r.out and "1.750000" in r.out

    info = cli("user", "show", "alice", "--json", "--config", env.config).json
    assert info["quota"] == expected + 250_000
    assert info["usd"] == 1.75
    assert [(e["kind"], e["amount"], e["note"]) for e in info["ledger"]] == [
        ("topup", 250_000, "invoice 7"), ("topup", expected, "topup by operator")]
    assert env.sql('SELECT balance FROM "user" WHERE name = ?', ("alice",)) == [(1_750_000,)]


def test_user_show_text(cli, env) -> None:
    cli("user", "create", "alice", "--config", env.config)
    cli("user", "topup", "alice", "2", "--config", env.config)
    r = cli("user", "show", "alice", "--config", env.config)
    assert r.code == 0
    assert "alice" in r.out and "$2.0" in r.out and "2000000 quota" in r.out and "topup" in r.out


@pytest.mark.parametrize("amount", ["0", "-1", "abc", "NaN", "0.0000000001"])
def test_topup_refuses_bad_amounts(cli, env, amount) -> None:
    seed_user(env.store(), "alice")
    r = cli("user", "topup", "alice", "--config", env.config, "--", amount)
    assert r.code != 0
    assert_one_line_error(r.err)
    assert cli("user", "show", "alice", "--json", "--config", env.config).json["quota"] == 0


def test_disable_and_enable(cli, env) -> None:
    cli("user", "create", "alice", "--config", env.config)
    r = cli("user", "disable", "alice", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json["status"] == "disabled"
    assert cli("user", "show", "alice", "--json", "--config", env.config).json["status"] == "disabled"
    r = cli("user", "enable", "alice", "--config", env.config)
    assert r.code == 0
    assert "now active" in r.out
    assert cli("user", "show", "alice", "--json", "--config", env.config).json["status"] == "active"
    r = cli("user", "disable", "alice", "--config", env.config)
    assert "now disabled" in r.out


@pytest.mark.parametrize("args", [
    ("user", "show", "ghost"), ("user", "topup", "ghost", "1"), ("user", "disable", "ghost"),
    ("user", "enable", "ghost"),
])
def test_unknown_user_is_one_line_error(cli, env, args) -> None:
    r = cli(*args, "--config", env.config)
    assert r.code == 1
    assert r.out == ""
    assert_one_line_error(r.err, "no user named 'ghost'")
