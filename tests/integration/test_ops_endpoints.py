"""The operator's toolbox over HTTP: GET /health, GET /metrics (Prometheus), the ops token,
and the JSON access log.  Nothing secret may ever appear in what they return."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest

from tests.fakes import FakeOpenAIChat

from .cluster_support import free_port, pg_databases, pg_url  # noqa: F401  (fixtures)
from .conftest import OpenAIFactory, StartRelay, openai_config
from .harness import UPSTREAM_KEY, start_relay, stop_relay

OPS_TOKEN = "ops-token-0123456789abcdef"
DB_PASSWORD = "db-password-CANARY-31337"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.text(), dict(resp.headers)


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one sample of the text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == want:
            return float(value)
    return 0.0


async def test_health_and_metrics_after_real_traffic(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                                     oai: OpenAIFactory, http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("alice", quota=10**9)
    key = relay.token("alice")
    client = oai(relay.base, key)
    await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "one two"}])
    stream = await client.chat.completions.create(model="gpt-4o", stream=True,
                                                  messages=[{"role": "user", "content": "three"}])
    async for _ in stream:
        pass
    fake_openai.mode = "status:500"
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    await relay.settled(3)

    status, body, headers = await _get(http, relay.url + "/health")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    health = orjson.loads(body)
    assert health["status"] == "ok"
    assert health["database"]["ok"] is True and health["database"]["kind"] == "sqlite"
    assert health["redis"] == {"configured": False, "ok": None, "limits": "per-instance"}
    assert health["jobs"]["leader"] is True and "prune-logs" in health["jobs"]["jobs"]
    channels = {c["name"]: c for c in health["channels"]}
    assert channels["fake-openai"]["failures"] == 1 and channels["local-mock"]["state"] == "ok"

    status, text, headers = await _get(http, relay.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert _sample(text, "relaykit_requests_total", model="gpt-4o", channel="fake-openai", status="200") == 2
    assert _sample(text, "relaykit_requests_total", model="gpt-4o-mini", channel="fake-openai", status="502") == 1
    logs = relay.logs()
    assert _sample(text, "relaykit_tokens_total", model="gpt-4o", type="prompt") == sum(
        r["prompt_tokens"] for r in logs if r["model"] == "gpt-4o")
    assert _sample(text, "relaykit_tokens_total", model="gpt-4o", type="completion") == sum(
        r["completion_tokens"] for r in logs if r["model"] == "gpt-4o") > 0
    assert _sample(text, "relaykit_quota_total", model="gpt-4o") == sum(r["quota"] for r in logs) > 0
    assert _sample(text, "relaykit_upstream_errors_total", channel="fake-openai", status="500") == 1
    assert _sample(text, "relaykit_request_duration_seconds_count", model="gpt-4o", stream="true") == 1
    assert _sample(text, "relaykit_overhead_seconds_count") == 3
    assert _sample(text, "relaykit_open_streams") == 0
    assert _sample(text, "relaykit_http_requests_total", route="/v1/chat/completions", method="POST",
                   status="200") == 2
    assert _sample(text, "relaykit_http_requests_total", route="/health", method="GET", status="200") == 1
    assert _sample(text, "relaykit_jobs_leader") == 1 and _sample(text, "relaykit_redis_up") == 0
    assert _sample(text, "relaykit_writer_operations") >= 6
    # no secret of any kind: the upstream key, the customer's key, their name
    for secret in (UPSTREAM_KEY, key, key[3:], "alice"):
        assert secret not in text and secret not in body


async def test_an_open_stream_is_counted_while_it_runs(relay_factory: StartRelay, fake_openai: FakeOpenAIChat,
                                                       oai: OpenAIFactory, http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(openai_config(fake_openai.url))
    relay.user("bob", quota=10**9)
    client = oai(relay.base, relay.token("bob"))
    fake_openai.mode = "slow_stream:0.2:4"
    stream = await client.chat.completions.create(model="gpt-4o", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}])
    got = [await stream.__anext__()]
    _, text, _ = await _get(http, relay.url + "/metrics")
    assert _sample(text, "relaykit_open_streams") == 1
    got += [c async for c in stream]
    await relay.settled(1)
    _, text, _ = await _get(http, relay.url + "/metrics")
    assert _sample(text, "relaykit_open_streams") == 0 and len(got) >= 4


async def test_the_ops_token_guards_metrics_and_health_details(relay_factory: StartRelay,
                                                               http: aiohttp.ClientSession) -> None:
    relay = await relay_factory(f"""
ops: {{token: "{OPS_TOKEN}"}}
models:
  mock-gpt: {{input: 2, output: 8}}
channels:
  - name: local-mock
    type: mock
    models: [mock-gpt]
""")
    status, body, headers = await _get(http, relay.url + "/metrics")
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    assert (await _get(http, relay.url + "/metrics", "wrong-token-0123456789"))[0] == 401
    status, body, _ = await _get(http, relay.url + "/metrics", OPS_TOKEN)
    assert status == 200 and "relaykit_open_streams" in body and OPS_TOKEN not in body
    # the load balancer still gets the verdict; the details need the token
    status, body, _ = await _get(http, relay.url + "/health")
    assert status == 200 and orjson.loads(body) == {"status": "ok"}
    status, body, _ = await _get(http, relay.url + "/health", OPS_TOKEN)
    assert status == 200 and orjson.loads(body)["database"]["ok"] is True


async def test_the_access_log_is_one_json_line_per_request_without_query_strings(
        relay_factory: StartRelay, http: aiohttp.ClientSession) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    relay = await relay_factory("""
ops: {access_log: true}
models:
  mock-gpt: {input: 2, output: 8}
channels:
  - name: local-mock
    type: mock
    models: [mock-gpt]
""")
    keep = Keep()
    logging.getLogger("relaykit.access").addHandler(keep)
    try:
        relay.user("cy", quota=10**9)
        key = relay.token("cy")
        async with http.post(relay.base + "/chat/completions?key=sk-in-the-query-SECRET",
                             headers={"Authorization": f"Bearer {key}"},
                             json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}) as resp:
            assert resp.status == 200
            rid = resp.headers["X-Request-Id"]
        await _get(http, relay.url + "/nowhere")
        await relay.settled(1)
    finally:
        logging.getLogger("relaykit.access").removeHandler(keep)
    entries = [orjson.loads(line) for line in lines]
    chat = next(e for e in entries if e["path"] == "/v1/chat/completions")
    assert chat["status"] == 200 and chat["method"] == "POST" and chat["request_id"] == rid
    assert chat["route"] == "/v1/chat/completions" and chat["ms"] >= 0
    assert next(e for e in entries if e["path"] == "/nowhere")["status"] == 404
    assert not any("SECRET" in line or key in line for line in lines)


async def test_health_is_503_when_the_database_is_gone(tmp_path: Path, pg_url: str,  # noqa: F811
                                                       http: aiohttp.ClientSession) -> None:
    password_url = pg_url  # trust auth: no password to hide here; the config below adds one
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text(f"""
database: {{url: "{password_url}"}}
redis: {{url: "redis://127.0.0.1:{free_port()}/0"}}
models:
  mock-gpt: {{input: 2, output: 8}}
channels:
  - name: local-mock
    type: mock
    models: [mock-gpt]
""", encoding="utf-8")
    relay = await start_relay(cfg)
    try:
        status, body, _ = await _get(http, relay.url + "/health")
        health = orjson.loads(body)
        # Redis configured but nowhere: still serving, with per-instance limits, and saying so
        assert status == 200 and health["status"] == "degraded"
        assert health["redis"]["ok"] is False and health["redis"]["limits"] == "per-instance"
        assert health["database"] == {**health["database"], "ok": True, "kind": "postgresql"}
        import psycopg
        name = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(pg_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        status, body, _ = await _get(http, relay.url + "/health")
        assert status == 503 and orjson.loads(body)["status"] == "down"
    finally:
        await stop_relay(relay)
        relay.store.close()


def test_a_password_in_database_or_redis_urls_never_reaches_health(tmp_path: Path) -> None:
    from relaykit.relay.shared import Shared
    shared = Shared(f"redis://:{DB_PASSWORD}@127.0.0.1:1/0", "p")
    assert DB_PASSWORD not in orjson.dumps(shared.status()).decode()
