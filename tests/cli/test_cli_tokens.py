"""relaykit token create|list|show|revoke: the key is printed once and stored only as a hash."""

from __future__ import annotations

import hashlib
import time

import pytest
from tests.cli.cli_support import QUOTA_PER_USD, assert_one_line_error, seed_user


@pytest.fixture
def alice(env) -> str:
    seed_user(env.store(), "alice")
    return "alice"


def test_create_json_gives_id_key_name_user_and_stores_only_the_hash(cli, env, alice) -> None:
    r = cli("token", "create", "--user", alice, "--name", "laptop", "--json", "--config", env.config)
    assert r.code == 0, r.err
    made = r.json
    assert set(made) == {"id", "key", "name", "user"}
    assert made["name"] == "laptop" and made["user"] == "alice" and isinstance(made["id"], int)
    key = made["key"]
    assert key.startswith("sk-") and len(key) > 40
    assert env.sql("SELECT id, key_hash FROM token") == [(made["id"], hashlib.sha256(key.encode()).hexdigest())]
    assert key.encode() not in env.db.read_bytes()


def test_key_is_never_shown_again(cli, env, alice, wide) -> None:
    r = cli("token", "create", "--user", alice, "--name", "ci", "--config", env.config)
    assert r.code == 0, r.err
    keys = [line for line in r.out.splitlines() if line.startswith("sk-")]
    assert len(keys) == 1
    key = keys[0]
    [(token_id,)] = env.sql("SELECT id FROM token")
    masked = f"sk-...{key[-4:]}"

    for args in (("token", "list", "--json"), ("token", "list", "--user", alice, "--json"),
                 ("token", "show", str(token_id), "--json")):
        out = cli(*args, "--config", env.config).out
        assert key not in out and key[3:] not in out, args
        assert masked in out, args
    listed = cli("token", "list", "--json", "--config", env.config).json
    assert [(t["id"], t["key"], t["name"], t["user"], t["status"]) for t in listed] == [
        (token_id, masked, "ci", "alice", "active")]
    shown = cli("token", "show", str(token_id), "--json", "--config", env.config).json
    assert shown["key"] == masked

    for args in (("token", "list"), ("token", "show", str(token_id))):
        r = cli(*args, "--config", env.config)
        assert r.code == 0
        assert key not in r.out and key[3:] not in r.out
        assert masked in r.out and "ci" in r.out


def test_limits_are_stored_and_shown(cli, env, alice) -> None:
    before = time.time()
    r = cli("token", "create", "--user", alice, "--name", "capped", "--quota", "2.5", "--expires", "30d",
            "--group", "vip", "--models", "mock-gpt, mock-mini", "--ip", "10.0.0.0/8,192.168.1.7",
            "--rpm", "60", "--tpm", "10000", "--json", "--config", env.config)
    after = time.time()
    assert r.code == 0, r.err
    shown = cli("token", "show", str(r.json["id"]), "--json", "--config", env.config).json
    assert shown["unlimited"] is False
    assert shown["remain_quota"] == int(2.5 * QUOTA_PER_USD)
    assert shown["remain_usd"] == 2.5
    assert before + 30 * 86400 <= shown["expires_at"] <= after + 30 * 86400
    assert shown["group"] == "vip"
    assert shown["models"] == ["mock-gpt", "mock-mini"]
    assert shown["ips"] == ["10.0.0.0/8", "192.168.1.7"]
    assert (shown["rpm"], shown["tpm"]) == (60, 10000)
    assert shown["status"] == "active"


def test_default_token_is_unlimited_without_expiry(cli, env, alice) -> None:
    r = cli("token", "create", "--user", alice, "--name", "free", "--unlimited", "--json", "--config", env.config)
    assert r.code == 0, r.err
    shown = cli("token", "show", str(r.json["id"]), "--json", "--config", env.config).json
    assert shown["unlimited"] is True and shown["remain_quota"] is None and shown["expires_at"] is None
    assert shown["models"] == [] and shown["ips"] == [] and shown["group"] is None


def test_token_list_filters_by_user(cli, env, alice) -> None:
    cli("user", "create", "bob", "--config", env.config)
    cli("token", "create", "--user", "alice", "--name", "a1", "--config", env.config)
    cli("token", "create", "--user", "bob", "--name", "b1", "--config", env.config)
    cli("token", "create", "--user", "alice", "--name", "a2", "--config", env.config)
    everyone = cli("token", "list", "--json", "--config", env.config).json
    assert [(t["user"], t["name"]) for t in everyone] == [("alice", "a1"), ("bob", "b1"), ("alice", "a2")]
    bobs = cli("token", "list", "--user", "bob", "--json", "--config", env.config).json
    assert [t["name"] for t in bobs] == ["b1"]
    r = cli("token", "list", "--user", "ghost", "--config", env.config)
    assert r.code == 1
    assert_one_line_error(r.err, "no user named 'ghost'")


@pytest.mark.parametrize(("extra", "needle"), [
    (("--ip", "10.0.0.300"), "10.0.0.300"),
    (("--ip", "10.0.0.0/8,not-an-ip"), "not-an-ip"),
    (("--expires", "tomorrow"), "'tomorrow'"),
    (("--expires", "-5d"), "'-5d'"),
    (("--quota", "lots"), "'lots'"),
    (("--quota", "-3"), "positive"),
    (("--quota", "1", "--unlimited"), "--unlimited"),
    (("--group", "gold"), "'gold'"),
    (("--rpm", "0"), "--rpm"),
])
def test_bad_values_are_one_line_errors_and_create_nothing(cli, env, alice, extra, needle) -> None:
    r = cli("token", "create", "--user", alice, "--name", "x", *extra, "--config", env.config)
    assert r.code == 1
    assert "sk-" not in r.out
    assert_one_line_error(r.err, needle)
    assert env.sql("SELECT COUNT(*) FROM token") == [(0,)]


def test_create_for_unknown_user_is_an_error(cli, env) -> None:
    r = cli("token", "create", "--user", "ghost", "--name", "x", "--config", env.config)
    assert r.code == 1
    assert "sk-" not in r.out
    assert_one_line_error(r.err, "no user named 'ghost'")
    assert env.sql("SELECT COUNT(*) FROM token") == [(0,)]


def test_revoke_marks_the_token_revoked(cli, env, alice) -> None:
    keep = cli("token", "create", "--user", alice, "--name", "keep", "--json", "--config", env.config).json
    gone = cli("token", "create", "--user", alice, "--name", "gone", "--json", "--config", env.config).json
    r = cli("token", "revoke", str(gone["id"]), "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json == {"id": gone["id"], "status": "revoked"}
    statuses = {t["name"]: t["status"] for t in cli("token", "list", "--json", "--config", env.config).json}
    assert statuses == {"keep": "active", "gone": "revoked"}
    assert cli("token", "show", str(gone["id"]), "--json", "--config", env.config).json["status"] == "revoked"
    r = cli("token", "revoke", str(keep["id"]), "--config", env.config)
    assert r.code == 0
    assert f"Token {keep['id']} is revoked." in r.out


@pytest.mark.parametrize("command", ["show", "revoke"])
def test_unknown_token_id_is_one_line_error(cli, env, command) -> None:
    r = cli("token", command, "999", "--config", env.config)
    assert r.code == 1
    assert r.out == ""
    assert_one_line_error(r.err, "no token with id 999")


def test_non_numeric_token_id_is_a_usage_error(cli, env) -> None:
    r = cli("token", "show", "abc", "--config", env.config)
    assert r.code == 2
    assert_one_line_error(r.err, "'ID'", "not a valid int")  # typer says "int" or "integer" by version
