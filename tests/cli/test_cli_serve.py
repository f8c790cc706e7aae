"""relaykit serve as an operator runs it: starts on the configured database, answers a chat
completion on the mock channel, sees CLI changes without a restart, and stops cleanly on
SIGTERM; the request then shows up in logs tail, usage and a passing audit."""

from __future__ import annotations

import math
import os
import re
import signal
import time
import urllib.error
import urllib.request

import orjson
import pytest
from tests.cli.cli_support import QUOTA_PER_USD, spawn


def _post(url: str, key: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=orjson.dumps(body), method="POST",
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, orjson.loads(exc.read())


def test_serve_relays_bills_logs_and_stops(cli, env) -> None:
    assert cli("user", "create", "alice", "--config", env.config).code == 0
    assert cli("user", "topup", "alice", "1", "--config", env.config).code == 0
    made = cli("token", "create", "--user", "alice", "--name", "app", "--json", "--config", env.config).json
    key = made["key"]

    with spawn("serve", "--port", "0", "--config", env.config, cwd=env.dir) as (proc, out):
        line = out.wait_for(lambda s: "listening on" in s, timeout=20)
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, line
        base = f"http://127.0.0.1:{m.group(1)}"

        status, body = _post(base + "/v1/chat/completions", key,
                             {"model": "mock-gpt", "messages": [{"role": "user", "content": "hello there"}]})
        assert status == 200, body
        usage = body["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0

        # mock-gpt is {input: 2.5, output: 10}: ratio 1.25, completion ratio 4 (SPEC §5)
        expected = math.ceil(1.25 * (usage["prompt_tokens"] + 4 * usage["completion_tokens"])
                             * QUOTA_PER_USD / 500_000)
        deadline = time.monotonic() + 10
        rows: list[dict] = []
        while time.monotonic() < deadline and not rows:
            rows = cli("logs", "tail", "--json", "--config", env.config).json
        assert len(rows) == 1, rows
        row = rows[0]
        assert (row["user"], row["model"], row["channel"], row["status"], row["estimated"]) == (
            "alice", "mock-gpt", "local-mock", 200, False)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"],
                                                                    usage["completion_tokens"])
        assert row["quota"] == expected and row["token_id"] == made["id"]
        shown = cli("user", "show", "alice", "--json", "--config", env.config).json
        assert shown["quota"] == QUOTA_PER_USD - expected

        # a token revoked with the CLI is refused by the running server within 2 seconds
        assert cli("token", "revoke", str(made["id"]), "--config", env.config).code == 0
        revoked_at = time.monotonic()
        last_served = revoked_at  # when the last request the server still accepted was sent
        while True:
            sent = time.monotonic()
            status, body = _post(base + "/v1/chat/completions", key,
                                 {"model": "mock-gpt", "messages": [{"role": "user", "content": "again"}]})
            if status != 200:
                break
            last_served = sent
            assert sent - revoked_at < 5, "the revoked token is still accepted after 5 s"
        assert status == 401, (status, body)
        assert body["error"]["type"] and key not in orjson.dumps(body).decode()
        assert last_served - revoked_at <= 2.0, f"accepted {last_served - revoked_at:.2f}s after the revoke"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        out.wait_for(lambda s: "relaykit stopped" in s, timeout=5)
        assert proc.stderr is not None
        err = proc.stderr.read()
        assert "Traceback" not in err, err
        assert key not in err and all(key not in s for s in out.lines)

    # requests served in the moments before the revocation arrived are billed and logged like any other
    rows = cli("logs", "tail", "-n", "1000", "--json", "--config", env.config).json
    assert rows[0]["quota"] == expected and all(r["status"] == 200 for r in rows)
    spent = sum(r["quota"] for r in rows)
    [by_token] = cli("usage", "--by", "token", "--json", "--config", env.config).json
    assert (by_token["token"], by_token["requests"], by_token["quota"]) == ("app", len(rows), spent)
    assert cli("user", "show", "alice", "--json", "--config", env.config).json["quota"] == QUOTA_PER_USD - spent
    r = cli("audit", "--json", "--config", env.config)
    assert r.code == 0 and r.json["ok"] is True


def _policies(pid: int) -> set[int]:
    """The scheduling policy of every thread of a running process."""
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is a Linux scheduling policy")
@pytest.mark.parametrize("setting, policy", [(None, "SCHED_BATCH"), ("false", "SCHED_OTHER")])
def test_serve_runs_every_thread_with_the_configured_scheduling_policy(env, setting, policy) -> None:
    """server.batch_scheduling (default true): the loop, the writer, the checkpointer and
    every other thread serve starts inherit SCHED_BATCH (server/scheduling.py)."""
    if setting is not None:
        text = env.config.read_text()
        env.config.write_text(text.replace("  port: 0\n", f"  port: 0\n  batch_scheduling: {setting}\n"))
    with spawn("serve", "--port", "0", "--config", env.config, cwd=env.dir) as (proc, out):
        out.wait_for(lambda s: "listening on" in s, timeout=20)
        threads = os.listdir(f"/proc/{proc.pid}/task")
        assert len(threads) >= 3  # the loop, the database writer, the checkpointer at least
        assert _policies(proc.pid) == {getattr(os, policy)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_batch_scheduling_setting_that_is_not_a_boolean_is_one_clear_error(cli, env) -> None:
    text = env.config.read_text()
    env.config.write_text(text.replace("  port: 0\n", "  port: 0\n  batch_scheduling: sometimes\n"))
    r = cli("serve", "--config", env.config)
    assert r.code != 0
    assert "server.batch_scheduling must be true or false" in r.err and "Traceback" not in r.err
