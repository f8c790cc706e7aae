"""Issue 5 security: secrets stay secret and no client chooses the upstream host.

Canary upstream keys (several vendors; some refused by an upstream that quotes the key
back in its 401, one on a channel nobody listens to) and canary relay tokens must appear
zero times -- whole, base64-encoded, or as any 12 consecutive characters -- in the logs
(captured at DEBUG in process, and the stderr/stdout of a real ``relaykit serve``), the
SQLite file and its WAL, every response status line, header and body, and the ``--json``
output of ``channel list``, ``token list`` and ``logs tail``.  Each test also checks that
the secret really was in play (the upstream received it and quoted it back), so an
empty haystack cannot pass for a clean one.

SSRF: every request field (``api_base``, ``base_url``, ``baseURL``, ``endpoint``,
``url``, image URLs) and header (``Host``, ``X-Forwarded-Host`` ...) that could point
the relay elsewhere points at a canary server on another loopback port, which must see
zero connections -- also when the configured upstream answers with a redirect to it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relaykit.cli.app import main
from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAIChat

from .harness import UPSTREAM_KEY, start_relay, stop_relay, write_config
from .served import run_cli, seed, serving

USD = 500_000
KEY_REFUSED_FIRST = "sk-canary-first-refused-8e1c5a7f3d9b20461f"   # refused (and quoted), then the next key serves
KEY_OPENAI_ECHO = "sk-canary-openai-echo-3b9d1f7a5c2e40689a"      # the only key of a channel that quotes it back
KEY_ANTHROPIC_ECHO = "sk-ant-canary-echo-5f2a8c1e7b3d90461c"
KEY_GEMINI_ECHO = "AIzaCanaryGeminiEcho1d7b3f9a5c2e80642b"
KEY_GEMINI_DOWN = "AIzaCanaryGeminiDown9c3e5a1f7d2b40867e"          # its channel's port is closed
BOGUS_TOKEN = "sk-canary-not-a-relay-token-77aa88bb99cc00dd"        # a client's wrong key: never echoed
UPSTREAM_KEYS = [UPSTREAM_KEY, KEY_REFUSED_FIRST, KEY_OPENAI_ECHO, KEY_ANTHROPIC_ECHO, KEY_GEMINI_ECHO,
                 KEY_GEMINI_DOWN]


def fragments(secret: str) -> set[str]:
    """What a leak looks like: the secret, its base64 forms, any 12 consecutive characters."""
    out = {secret[i:i + 12] for i in range(len(secret) - 11)}
    for raw in (secret, f"Bearer {secret}"):
        out.add(base64.b64encode(raw.encode()).decode().rstrip("="))
        out.add(base64.urlsafe_b64encode(raw.encode()).decode().rstrip("="))
    return out


def leaks(haystacks: dict[str, str | bytes], secrets: Iterable[str]) -> list[str]:
    """``where: fragment`` for every fragment of every secret found in any haystack."""
    found = []
    for secret in secrets:
        frags = fragments(secret)
        for where, hay in haystacks.items():
            text = hay.decode("latin-1") if isinstance(hay, bytes) else hay
            found += [f"{where}: {f!r} (of {secret[:6]}...)" for f in frags if f in text]
    return found


def closed_port_url() -> str:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@dataclass
class Upstreams:
    ok: FakeOpenAIChat
    echo: FakeOpenAIChat
    claude: FakeAnthropic
    gemini: FakeGemini
    down_url: str

    def config(self) -> str:
        return f"""
groups: {{default: {{ratio: 1}}}}
models:
  gpt-4o: {{input: 2.5, output: 10}}
  m-echo: {{input: 1, output: 2}}
  m-claude: {{input: 1, output: 2}}
  m-gemini: {{input: 1, output: 2}}
  m-down: {{input: 1, output: 2}}
channels:
  - {{name: good, type: openai, base_url: "{self.ok.url}", keys: ["{KEY_REFUSED_FIRST}", "{UPSTREAM_KEY}"],
      models: [gpt-4o]}}
  - {{name: quoter, type: openai, base_url: "{self.echo.url}", keys: ["{KEY_OPENAI_ECHO}"], models: [m-echo]}}
  - {{name: claude, type: anthropic, base_url: "{self.claude.url}", keys: ["{KEY_ANTHROPIC_ECHO}"],
      models: [m-claude], model_map: {{m-claude: claude-sonnet-4-5}}}}
  - {{name: gem, type: gemini, base_url: "{self.gemini.url}", keys: ["{KEY_GEMINI_ECHO}"], models: [m-gemini],
      model_map: {{m-gemini: gemini-2.5-flash}}}}
  - {{name: gem-down, type: gemini, base_url: "{self.down_url}", keys: ["{KEY_GEMINI_DOWN}"], models: [m-down],
      timeouts: {{connect: 1, first_byte: 2, idle: 2}}}}
"""


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    ok = FakeOpenAIChat(keys={UPSTREAM_KEY})
    echo = FakeOpenAIChat(keys={UPSTREAM_KEY}, mode="echo_key_401")
    claude = FakeAnthropic(keys={UPSTREAM_KEY}, mode="echo_key_401")
    gemini = FakeGemini(keys={UPSTREAM_KEY}, mode="echo_key_401")
    fakes = [ok, echo, claude, gemini]
    for f in fakes:
        await f.start()
    ok.script = ["echo_key_401"]  # the first key of the good channel is refused, quoted
    yield Upstreams(ok, echo, claude, gemini, closed_port_url())
    for f in fakes:
        await f.stop()


@dataclass
class Seen:
    """Everything the clients received: status lines, headers and bodies."""

    responses: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join(self.responses)


async def traffic(base: str, token: str) -> Seen:
    """One of everything a client can do that may go near a secret."""
    seen = Seen()
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    bearer = {"Authorization": f"Bearer {token}"}
    calls: list[tuple[str, str, str, dict[str, Any] | None, dict[str, str]]] = [
        ("good-first", "POST", "/v1/chat/completions", chat, bearer),          # key 1 refused, key 2 serves
        ("good-stream", "POST", "/v1/chat/completions", {**chat, "stream": True}, bearer),
        ("quoter", "POST", "/v1/chat/completions", {**chat, "model": "m-echo"}, bearer),
        ("quoter-stream", "POST", "/v1/chat/completions", {**chat, "model": "m-echo", "stream": True}, bearer),
        ("quoter-responses", "POST", "/v1/responses", {"model": "m-echo", "input": "hello"}, bearer),
        ("claude", "POST", "/v1/messages", {"model": "m-claude", "max_tokens": 16, "messages": chat["messages"]},
         {"x-api-key": token, "anthropic-version": "2023-06-01"}),
        ("claude-via-openai", "POST", "/v1/chat/completions", {**chat, "model": "m-claude"}, bearer),
        ("gemini", "POST", f"/v1beta/models/m-gemini:generateContent?key={token}",
         {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}, {}),
        ("gemini-stream", "POST", "/v1beta/models/m-gemini:streamGenerateContent?alt=sse",
         {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}, {"x-goog-api-key": token}),
        ("gemini-down", "POST", "/v1/chat/completions", {**chat, "model": "m-down"}, bearer),
        ("bogus-token", "POST", "/v1/chat/completions", chat, {"Authorization": f"Bearer {BOGUS_TOKEN}"}),
        ("bogus-x-api-key", "POST", "/v1/messages", {"model": "m-claude", "max_tokens": 1, "messages": []},
         {"x-api-key": BOGUS_TOKEN}),
        ("bogus-query", "GET", f"/v1beta/models?key={BOGUS_TOKEN}", None, {}),
        ("models", "GET", "/v1/models", None, bearer),
        ("models-goog", "GET", "/v1beta/models", None, {"x-goog-api-key": token}),
        ("metrics", "GET", "/metrics", None, bearer),
    ]
    async with aiohttp.ClientSession() as http:
        for name, method, path, body, headers in calls:
            async with http.request(method, base + path, json=body, headers=headers) as r:
                got = await r.read()
                seen.statuses[name] = r.status
                head = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
                seen.responses.append(f"{name} -> HTTP {r.status} {r.reason}\n{head}\n\n"
                                      + got.decode("utf-8", "replace"))
    return seen


def check_traffic(seen: Seen, up: Upstreams) -> None:
    """The outcomes a user sees, and proof that the secrets were really in play."""
    s = seen.statuses
    assert (s["good-first"], s["good-stream"]) == (200, 200)
    assert {s[k] for k in ("quoter", "quoter-stream", "quoter-responses", "claude", "claude-via-openai", "gemini",
                           "gemini-stream", "gemini-down")} == {502}
    assert s["bogus-token"] == s["bogus-x-api-key"] == s["bogus-query"] == 401
    assert s["models"] == s["models-goog"] == 200 and s["metrics"] in (200, 401, 404)
    # the upstreams did receive the canaries and did quote them back in their 401 bodies
    assert f"Bearer {KEY_REFUSED_FIRST}" in [r.headers.get("Authorization") for r in up.ok.requests]
    assert {r.headers.get("Authorization") for r in up.echo.requests} == {f"Bearer {KEY_OPENAI_ECHO}"}
    assert {r.headers.get("x-api-key") for r in up.claude.requests} == {KEY_ANTHROPIC_ECHO}
    assert {r.headers.get("x-goog-api-key") for r in up.gemini.requests} == {KEY_GEMINI_ECHO}
    assert all(r.mode == "echo_key_401" for r in up.echo.requests + up.claude.requests + up.gemini.requests)
    assert "upstream provider rejected" in seen.text()  # the generic sentence replaced the quoting 401


def db_files(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db.parent.glob(db.name + "*")}


def cli_json(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main([*args, "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    json.loads(out.out)  # it is JSON
    return out.out + out.err


async def test_canaries_never_leak_in_process_with_debug_logs(
        tmp_path: Path, upstreams: Upstreams, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = write_config(tmp_path, upstreams.config())
    relay = await start_relay(cfg)
    try:
        relay.user("ann", quota=100 * USD)
        token = relay.token("ann")
        relay.store.cache.load_now()
        seen = await traffic(relay.url, token)
        await relay.settled(10)
        files_live = db_files(tmp_path / "relaykit.db")  # with the WAL as the running relay left it
    finally:
        await stop_relay(relay)
    check_traffic(seen, upstreams)
    config = ["--config", str(cfg)]
    channels = cli_json("channel", "list", *config, capsys=capsys)
    tokens = cli_json("token", "list", *config, capsys=capsys)
    logs = cli_json("logs", "tail", "-n", "1000", *config, capsys=capsys)
    # the refused keys are shown to the operator, masked, with the reason
    listed = {c["name"]: c for c in json.loads(channels)}
    first = listed["good"]["keys"][0]
    assert first["status"] == "disabled" and "401" in first["reason"] and first["key"] == "sk-...461f"
    assert listed["quoter"]["status"] == "no live key"
    log_text = "\n".join([caplog.text] + [r.getMessage() for r in caplog.records])
    assert "disabled" in log_text and len(caplog.records) > 50  # the relay did log, at DEBUG
    haystacks: dict[str, str | bytes] = {"responses": seen.text(), "log": log_text, "channel list": channels,
                                         "token list": tokens, "logs tail": logs,
                                         **{f"live {k}": v for k, v in files_live.items()},
                                         **db_files(tmp_path / "relaykit.db")}
    assert leaks(haystacks, [*UPSTREAM_KEYS, token, BOGUS_TOKEN]) == []


async def test_canaries_never_leak_from_relaykit_serve(tmp_path: Path, upstreams: Upstreams) -> None:
    cfg = tmp_path / "relaykit.yaml"
    db = tmp_path / "relaykit.db"
    cfg.write_text(f'server: {{host: 127.0.0.1, port: 0, drain_seconds: 2}}\ndatabase: {{url: "sqlite:///{db}"}}\n'
                   + upstreams.config(), encoding="utf-8")
    token = seed(f"sqlite:///{db}", {"bo": 100 * USD})["bo"]
    async with serving(cfg) as relay:
        seen = await traffic(relay.url, token)
        files_live = db_files(db)
        relay.signal(signal.SIGTERM)
        assert await relay.wait_exit(timeout=10) == 0
        out, err = relay.stdout, relay.stderr
    check_traffic(seen, upstreams)
    assert "disabled" in err  # the key refusals were logged (masked)
    cli = {}
    for args in (("channel", "list"), ("token", "list"), ("logs", "tail", "-n", "1000")):
        code, stdout, stderr = await run_cli(*args, "--json", "--config", str(cfg), cwd=tmp_path)
        assert code == 0, stderr
        cli[" ".join(args)] = stdout + stderr
    assert len(json.loads(cli["logs tail -n 1000"])) == 10
    haystacks: dict[str, str | bytes] = {"responses": seen.text(), "serve stderr": err, "serve stdout": out, **cli,
                                         **{f"live {k}": v for k, v in files_live.items()}, **db_files(db)}
    assert leaks(haystacks, [*UPSTREAM_KEYS, token, BOGUS_TOKEN]) == []


# --------------------------------------------------------------------------- no client-chosen upstream


class Canary:
    """An aiohttp server on another loopback port that counts every TCP connection."""

    def __init__(self) -> None:
        self.connections = 0
        self.url = ""

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"id": "canary", "choices": [{"message": {"content": "you were redirected"}}]})

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Canary]:
        server = web.Server(self._handle)

        def factory() -> Any:
            self.connections += 1
            return server()

        tcp = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{tcp.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            tcp.close()
            await tcp.wait_closed()
            await server.shutdown(1)


async def redirecting_upstream(target: str) -> tuple[web.AppRunner, str]:
    """An upstream that answers every request with a redirect to ``target``."""
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": target + request.path})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_no_client_field_or_header_chooses_the_upstream(tmp_path: Path, fake_openai: FakeOpenAIChat) -> None:
    claude = FakeAnthropic(keys={UPSTREAM_KEY})
    await claude.start()
    async with Canary().running() as canary:
        redirector, redirect_url = await redirecting_upstream(canary.url)
        c = canary.url
        relay = await start_relay(write_config(tmp_path, f"""
groups: {{default: {{ratio: 1}}}}
models:
  gpt-4o: {{input: 2.5, output: 10}}
  claude-sonnet-4-5: {{input: 3, output: 15}}
  m-redirect: {{input: 1, output: 1}}
channels:
  - {{name: oa, type: openai, base_url: "{fake_openai.url}", keys: ["{UPSTREAM_KEY}"], models: [gpt-4o]}}
  - {{name: an, type: anthropic, base_url: "{claude.url}", keys: ["{UPSTREAM_KEY}"], models: [claude-sonnet-4-5]}}
  - {{name: redirector, type: openai, base_url: "{redirect_url}", keys: ["{UPSTREAM_KEY}"], models: [m-redirect]}}
"""))
        try:
            relay.user("cy", quota=100 * USD)
            token = relay.token("cy")
            relay.store.cache.load_now()
            overrides = {"api_base": c, "base_url": c, "baseURL": c, "endpoint": c, "url": c,
                         "api_host": c, "host": c.removeprefix("http://"), "azure_endpoint": c,
                         "extra_body": {"api_base": c, "base_url": c}}
            hosts = {"Host": c.removeprefix("http://"), "X-Forwarded-Host": c.removeprefix("http://"),
                     "X-Forwarded-Proto": "http", "X-Forwarded-For": "127.0.0.1", "Forwarded": f"host={c[7:]}",
                     "X-Original-URL": c + "/v1/chat/completions", "X-Rewrite-URL": c, "X-Api-Base": c,
                     "X-Base-URL": c, "x-portkey-custom-host": c, "Origin": c, "Referer": c}
            image = {"type": "image_url", "image_url": {"url": c + "/cat.png"}}
            text = {"type": "text", "text": "what is this?"}
            q = f"?api_base={c}&base_url={c}&endpoint={c}"
            requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
            for stream in (False, True):
                requests += [
                    ("/v1/chat/completions" + q, {"model": "gpt-4o", "stream": stream, **overrides,
                                                  "messages": [{"role": "user", "content": [text, image]}]},
                     {"Authorization": f"Bearer {token}"}),
                    ("/v1/chat/completions", {"model": "claude-sonnet-4-5", "stream": stream, **overrides,
                                              "messages": [{"role": "user", "content": [text, image]}]},
                     {"Authorization": f"Bearer {token}"}),
                    ("/v1/responses" + q, {"model": "gpt-4o", "stream": stream, **overrides, "input": [
                        {"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                                     {"type": "input_image", "image_url": c + "/cat.png"}]}]},
                     {"Authorization": f"Bearer {token}"}),
                    ("/v1/messages" + q, {"model": "claude-sonnet-4-5", "max_tokens": 32, "stream": stream,
                                          **overrides, "messages": [{"role": "user", "content": [
                                              {"type": "text", "text": "hi"},
                                              {"type": "image", "source": {"type": "url", "url": c + "/cat.png"}}]}]},
                     {"x-api-key": token, "anthropic-version": "2023-06-01"}),
                    ("/v1/messages", {"model": "gpt-4o", "max_tokens": 32, "stream": stream, **overrides,
                                      "messages": [{"role": "user", "content": "hi"}]},
                     {"x-api-key": token, "anthropic-version": "2023-06-01"}),
                    (f"/v1beta/models/gpt-4o:{'streamGenerateContent?alt=sse&' if stream else 'generateContent?'}"
                     f"api_base={c}", {**overrides, "contents": [{"role": "user", "parts": [
                         {"text": "hi"}, {"fileData": {"mimeType": "image/png", "fileUri": c + "/cat.png"}}]}]},
                     {"x-goog-api-key": token}),
                ]
            statuses = []
            async with aiohttp.ClientSession() as http:
                for path, body, headers in requests:
                    async with http.post(relay.url + path, json=body, headers={**headers, **hosts}) as r:
                        await r.read()
                        statuses.append(r.status)
                # an upstream that redirects to the canary is not followed
                for stream in (False, True):
                    async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                                         json={"model": "m-redirect", "stream": stream,
                                               "messages": [{"role": "user", "content": "hi"}]}) as r:
                        redirected = await r.read()
                        assert r.status == 502, (r.status, redirected[:300])
                        assert b"you were redirected" not in redirected
            await relay.settled(len(requests) + 2)
        finally:
            await stop_relay(relay)
            await redirector.cleanup()
            await claude.stop()
        # every request went to its configured upstream (the fake OpenAI has no Responses API: its
        # 404 comes back as a 4xx), and not one connection reached the canary
        assert all(s == 200 or 400 <= s < 500 for s in statuses), statuses
        assert len(fake_openai.requests) + len(claude.requests) == len(requests)
        assert statuses.count(200) == len(requests) - sum(r.path == "/v1/responses" for r in fake_openai.requests)
        assert {r.headers.get("Host") for r in fake_openai.requests} == {fake_openai.url[7:]}
        assert {r.headers.get("Host") for r in claude.requests} == {claude.url[7:]}
        assert canary.connections == 0
