"""relaykit logs tail [-f] | logs prune, relaykit usage, relaykit audit."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import orjson
import pytest
from tests.cli.cli_support import (
    QUOTA_PER_USD,
    add_log,
    assert_one_line_error,
    seed_token,
    seed_user,
    spawn,
    user_id,
)

from relaykit.store import billing

LOG_KEYS = {"model", "channel", "prompt_tokens", "completion_tokens", "quota", "status", "estimated", "created_at"}


def _utc(day: str) -> float:
    """Noon UTC of a date: far from any day boundary in every time zone's --since/--until."""
    return datetime.fromisoformat(day + "T12:00:00+00:00").timestamp()


@pytest.fixture
def populated(env):
    """alice and bob, one token each, four settled requests over two models, two channels, two days."""
    store = env.store()
    seed_user(store, "alice", usd=10)
    seed_user(store, "bob", usd=10)
    ta = seed_token(store, "alice", "a-key")
    tb = seed_token(store, "bob", "b-key")
    add_log(store, user="alice", token_id=ta, token_name="a-key", model="mock-gpt", channel="local-mock",
            prompt=10, completion=5, quota=100, created_at=_utc("2024-01-10"))
    add_log(store, user="alice", token_id=ta, token_name="a-key", model="mock-gpt", channel="other",
            prompt=20, completion=10, quota=200, created_at=_utc("2024-01-20"), estimated=True, stream=True)
    add_log(store, user="bob", token_id=tb, token_name="b-key", model="mock-mini", channel="local-mock",
            prompt=1, completion=2, quota=7, created_at=_utc("2024-01-20"))
    add_log(store, user="alice", token_id=ta, token_name="a-key", model="mock-mini", channel="local-mock",
            prompt=3, completion=4, quota=11, status=502, created_at=_utc("2024-01-20"))
    return {"alice_token": ta, "bob_token": tb}


def _tail(cli, env, *args: str) -> list[dict]:
    r = cli("logs", "tail", "--json", *args, "--config", env.config)
    assert r.code == 0, r.err
    rows = r.json
    assert isinstance(rows, list)
    return rows


def test_tail_empty(cli, env) -> None:
    assert _tail(cli, env) == []
    r = cli("logs", "tail", "--config", env.config)
    assert r.code == 0
    assert "No consumption records." in r.out


def test_tail_rows_carry_the_documented_fields(cli, env, populated) -> None:
    rows = _tail(cli, env)
    assert len(rows) == 4
    for row in rows:
        assert LOG_KEYS <= set(row)
    # oldest first, newest last
    assert [(r["user"], r["model"], r["channel"], r["prompt_tokens"], r["completion_tokens"], r["quota"],
             r["status"], r["estimated"]) for r in rows] == [
        ("alice", "mock-gpt", "local-mock", 10, 5, 100, 200, False),
        ("alice", "mock-gpt", "other", 20, 10, 200, 200, True),
        ("bob", "mock-mini", "local-mock", 1, 2, 7, 200, False),
        ("alice", "mock-mini", "local-mock", 3, 4, 11, 502, False),
    ]
    assert rows[0]["created_at"] == _utc("2024-01-10")
    assert rows[1]["stream"] is True and rows[1]["token_name"] == "a-key"


def test_tail_filters(cli, env, populated) -> None:
    assert {r["user"] for r in _tail(cli, env, "--user", "bob")} == {"bob"}
    assert len(_tail(cli, env, "--user", "alice")) == 3
    assert [r["quota"] for r in _tail(cli, env, "--model", "mock-mini")] == [7, 11]
    assert [r["quota"] for r in _tail(cli, env, "--channel", "other")] == [200]
    assert [r["quota"] for r in _tail(cli, env, "--token", str(populated["bob_token"]))] == [7]
    assert [r["quota"] for r in _tail(cli, env, "--user", "alice", "--model", "mock-mini")] == [11]
    assert _tail(cli, env, "--model", "no-such-model") == []
    # -n keeps the newest rows, still printed oldest first
    assert [r["quota"] for r in _tail(cli, env, "-n", "2")] == [7, 11]


def test_tail_table(cli, env, populated, wide) -> None:
    r = cli("logs", "tail", "--channel", "other", "--config", env.config)
    assert r.code == 0
    [row] = [line for line in r.out.splitlines() if "mock-gpt" in line]
    assert "alice" in row and "a-key" in row and "other" in row and "200" in row
    local = datetime.fromtimestamp(_utc("2024-01-20")).strftime("%Y-%m-%d %H:%M:%S")
    assert local in row


def test_tail_follow_prints_rows_inserted_after_it_started(cli, env) -> None:
    store = env.store()
    seed_user(store, "alice", usd=1)
    add_log(store, user="alice", model="mock-gpt", quota=100)
    with spawn("logs", "tail", "-f", "--json", "--config", env.config, cwd=env.dir) as (proc, out):
        first = orjson.loads(out.wait_for(lambda line: line.startswith("{")))
        assert (first["model"], first["quota"]) == ("mock-gpt", 100)
        # the follower has done its first query; this row exists only after that
        add_log(store, user="alice", model="mock-mini", channel="late-channel", quota=42)
        second = orjson.loads(out.wait_for(lambda line: "late-channel" in line, timeout=15))
        assert (second["model"], second["channel"], second["quota"], second["user"]) == (
            "mock-mini", "late-channel", 42, "alice")
        assert LOG_KEYS <= set(second)
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops following quietly
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "Traceback" not in err, err
    assert sum(1 for line in out.lines if line.startswith("{")) == 2


def test_prune_deletes_only_old_rows_and_never_ledger(cli, env) -> None:
    store = env.store()
    seed_user(store, "alice", usd=1)
    now = time.time()
    add_log(store, user="alice", model="old", quota=5, created_at=now - 3 * 86400)
    add_log(store, user="alice", model="older", quota=6, created_at=now - 30 * 86400)
    add_log(store, user="alice", model="fresh", quota=7, created_at=now - 3600)
    ledger_before = env.sql("SELECT id, kind, amount FROM ledger ORDER BY id")
    assert len(ledger_before) == 4  # topup + three charges

    r = cli("logs", "prune", "--older-than", "1d", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json == {"deleted": 2}
    assert [row["model"] for row in _tail(cli, env)] == ["fresh"]
    assert env.sql("SELECT id, kind, amount FROM ledger ORDER BY id") == ledger_before
    assert cli("audit", "--config", env.config).code == 0

    r = cli("logs", "prune", "--older-than", "1d", "--config", env.config)
    assert r.code == 0
    assert "Deleted 0 request log rows." in r.out


def test_prune_defaults_to_retention_days(cli, env) -> None:
    # the test config sets logs.retention_days: 2
    store = env.store()
    seed_user(store, "alice", usd=1)
    now = time.time()
    add_log(store, user="alice", model="three-days", created_at=now - 3 * 86400)
    add_log(store, user="alice", model="one-day", created_at=now - 1 * 86400)
    r = cli("logs", "prune", "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json == {"deleted": 1}
    assert [row["model"] for row in _tail(cli, env)] == ["one-day"]


@pytest.mark.parametrize("age", ["soon", "0", "0d"])
def test_prune_refuses_bad_ages(cli, env, age) -> None:
    r = cli("logs", "prune", "--older-than", age, "--config", env.config)
    assert r.code == 1
    assert_one_line_error(r.err)


def _usage(cli, env, *args: str) -> list[dict]:
    r = cli("usage", "--json", *args, "--config", env.config)
    assert r.code == 0, r.err
    return r.json


def test_usage_by_model(cli, env, populated) -> None:
    rows = _usage(cli, env, "--by", "model")
    assert rows == [
        {"model": "mock-gpt", "requests": 2, "prompt_tokens": 30, "completion_tokens": 15, "quota": 300,
         "usd": 300 / QUOTA_PER_USD},
        {"model": "mock-mini", "requests": 2, "prompt_tokens": 4, "completion_tokens": 6, "quota": 18,
         "usd": 18 / QUOTA_PER_USD},
    ]
    assert _usage(cli, env) == rows  # --by model is the default


def test_usage_by_day_channel_token(cli, env, populated) -> None:
    assert [(r["day"], r["requests"], r["quota"]) for r in _usage(cli, env, "--by", "day")] == [
        ("2024-01-10", 1, 100), ("2024-01-20", 3, 218)]
    assert [(r["channel"], r["requests"], r["prompt_tokens"], r["completion_tokens"], r["quota"])
            for r in _usage(cli, env, "--by", "channel")] == [
        ("local-mock", 3, 14, 11, 118), ("other", 1, 20, 10, 200)]
    assert [(r["token"], r["requests"], r["quota"]) for r in _usage(cli, env, "--by", "token")] == [
        ("a-key", 3, 311), ("b-key", 1, 7)]


def test_usage_filters(cli, env, populated) -> None:
    assert [(r["model"], r["quota"]) for r in _usage(cli, env, "--user", "alice")] == [
        ("mock-gpt", 300), ("mock-mini", 11)]
    assert [(r["model"], r["quota"]) for r in _usage(cli, env, "--since", "2024-01-15")] == [
        ("mock-gpt", 200), ("mock-mini", 18)]
    assert [(r["model"], r["quota"]) for r in _usage(cli, env, "--until", "2024-01-15")] == [("mock-gpt", 100)]
    assert _usage(cli, env, "--since", "2024-02-01") == []
    assert _usage(cli, env, "--since", "1d") == []  # the fixture's rows are all from 2024


def test_usage_table(cli, env, populated, wide) -> None:
    r = cli("usage", "--by", "channel", "--config", env.config)
    assert r.code == 0
    [row] = [line for line in r.out.splitlines() if "other" in line]
    assert "200" in row and "0.0002" in row
    r = cli("usage", "--user", "nobody-at-all", "--config", env.config)
    assert r.code == 0 and "No usage in this period." in r.out


def test_usage_bad_by_is_one_line_error(cli, env) -> None:
    r = cli("usage", "--by", "week", "--config", env.config)
    assert r.code == 1
    assert r.out == ""
    assert_one_line_error(r.err, "--by", "'week'")


def test_audit_passes_on_a_consistent_database(cli, env, populated) -> None:
    # an open hold (a request in flight) is part of a consistent state too
    store = env.store()
    bob = user_id(store, "bob")
    store.tx(lambda t: billing.place_hold(t, request_id="in-flight", user_id=bob, token_id=None,
                                         token_limited=False, amount=1234, model="mock-gpt"))
    r = cli("audit", "--json", "--config", env.config)
    assert r.code == 0, r.err
    report = r.json
    assert report["ok"] is True
    users = {u["user"]: u for u in report["users"]}
    assert users["alice"] == {"user": "alice", "balance": 10 * QUOTA_PER_USD - 311,
                              "ledger_sum": 10 * QUOTA_PER_USD - 311, "open_holds": 0, "ok": True}
    assert users["bob"]["open_holds"] == 1234 and users["bob"]["ok"] is True
    r = cli("audit", "--config", env.config)
    assert r.code == 0
    assert "Audit passed" in r.out


def test_audit_fails_and_names_the_user_after_a_corrupted_balance(cli, env, populated) -> None:
    env.sql('UPDATE "user" SET balance = balance + 1 WHERE name = ?', ("bob",))
    r = cli("audit", "--config", env.config)
    assert r.code == 1
    assert "Audit FAILED for 1 user(s): bob." in r.out
    r = cli("audit", "--json", "--config", env.config)
    assert r.code == 1
    report = r.json
    assert report["ok"] is False
    assert [u["user"] for u in report["users"] if not u["ok"]] == ["bob"]
    bad = next(u for u in report["users"] if u["user"] == "bob")
    assert bad["balance"] == bad["ledger_sum"] + 1


def test_audit_on_an_empty_database(cli, env) -> None:
    r = cli("audit", "--config", env.config)
    assert r.code == 0
    assert "No users to audit." in r.out
