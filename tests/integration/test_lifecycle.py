"""Issue 5 lifecycle, with `relaykit serve` as a real process: SIGTERM drains in-flight
streams (and cuts, with billing, those longer than the drain), SIGHUP reloads the YAML
(or keeps the old one and says why), and ten ``kill -9`` under load leave an intact
database whose open holds the next start releases into the ledger.

The fake upstream runs in the test's event loop; the relay is a separate process, so
signals, exit codes and the SQLite file are exactly what an operator meets.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from relaykit.cli.app import main
from relaykit.relay.meter import estimate_tokens
from tests.fakes import FakeOpenAIChat

from .harness import UPSTREAM_KEY
from .served import Served, query, refuses_connections, run_cli, seed, serving, start_serve

USD = 500_000


def write_config(tmp: Path, upstream_url: str, *, drain: float, extra_models: str = "",
                 mock_models: str = "mock-gpt") -> Path:
    path = tmp / "relaykit.yaml"
    path.write_text(f"""\
server: {{host: 127.0.0.1, port: 0, drain_seconds: {drain}}}
database: {{url: "sqlite:///{tmp / 'relaykit.db'}"}}
groups: {{default: {{ratio: 1}}}}
models:
  gpt-4o: {{input: 2.5, output: 10}}
  mock-gpt: {{input: 2, output: 8}}
{extra_models}
channels:
  - {{name: fake, type: openai, base_url: "{upstream_url}", keys: ["{UPSTREAM_KEY}"], models: [gpt-4o]}}
  - {{name: local-mock, type: mock, models: [{mock_models}]}}
""", encoding="utf-8")
    return path


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAIChat]:
    fake = FakeOpenAIChat(keys={UPSTREAM_KEY})
    await fake.start()
    yield fake
    await fake.stop()


@dataclass
class StreamResult:
    status: int
    text: str = ""
    done: bool = False          # the stream's own end ([DONE]) arrived
    error: str = ""             # an error event's message, if one arrived
    broken: bool = False        # the connection ended without the stream's end
    request_id: str = ""


async def stream_chat(http: aiohttp.ClientSession, url: str, key: str, model: str = "gpt-4o",
                      first: asyncio.Event | None = None) -> StreamResult:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "count for me"}]}
    async with http.post(url + "/v1/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        res = StreamResult(resp.status, request_id=resp.headers.get("X-Request-Id", ""))
        if resp.status != 200:
            return res
        parts: list[str] = []
        try:
            async for raw in resp.content:
                line = raw.decode().strip()
                if line == "data: [DONE]":
                    res.done = True
                elif line.startswith("data: "):
                    ev = json.loads(line[6:])
                    if "error" in ev:
                        res.error = ev["error"]["message"]
                    for ch in ev.get("choices") or ():
                        parts.append(ch["delta"].get("content") or "")
                        if first is not None and parts[-1]:
                            first.set()
        except aiohttp.ClientPayloadError:
            res.broken = True
        res.text = "".join(parts)
        if not res.done and not res.error:
            res.broken = True
        return res


def holds(db: Path) -> list[str]:
    return [r[0] for r in query(db, "SELECT request_id FROM hold")]


def integrity(db: Path) -> str:
    return query(db, "PRAGMA integrity_check")[0][0]


async def audit_ok(cfg: Path) -> None:
    code, out, err = await run_cli("audit", "--json", "--config", str(cfg), cwd=cfg.parent)
    assert code == 0 and json.loads(out)["ok"] is True, (code, out, err)


def charges(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT request_id, -amount FROM ledger WHERE kind = 'charge'"))


# --------------------------------------------------------------------------- SIGTERM


async def test_sigterm_drains_twenty_live_streams_and_commits_every_charge(
        tmp_path: Path, upstream: FakeOpenAIChat) -> None:
    drain = 5.0
    upstream.mode = "slow_stream:0.1:20"  # 20 words, one every 0.1 s: about 2 s a stream
    cfg = write_config(tmp_path, upstream.url, drain=drain)
    db = tmp_path / "relaykit.db"
    key = seed(f"sqlite:///{db}", {"ann": 10 * USD})["ann"]
    loop = asyncio.get_running_loop()
    async with serving(cfg) as relay, aiohttp.ClientSession() as http:
        firsts = [asyncio.Event() for _ in range(20)]
        streams = [asyncio.create_task(stream_chat(http, relay.url, key, first=f)) for f in firsts]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 15)
        assert upstream.active == 20  # all twenty are live upstream
        relay.signal(signal.SIGTERM)
        sent = loop.time()
        # the listening socket closes at once; the live streams carry on
        assert await refuses_connections("127.0.0.1", relay.port, timeout=2.0) < 1.0
        results = await asyncio.wait_for(asyncio.gather(*streams), drain + 5)
        code = await relay.wait_exit(timeout=drain + 5)
        exited = loop.time() - sent
        assert code == 0, relay.stderr
        assert exited <= drain + 2, f"exited {exited:.1f}s after SIGTERM"
        assert "Traceback" not in relay.stderr, relay.stderr
        assert "relaykit stopped" in relay.stdout
    expected = " ".join(["Hello", "from", "fake-openai!", "You", "said:", "count", "for", "me"]
                        + [f"tick{i}" for i in range(1, 13)])
    assert [(r.status, r.done, r.error, r.text) for r in results] == [(200, True, "", expected)] * 20
    # every charge was committed before the process exited
    billed = charges(db)
    assert sorted(billed) == sorted(r.request_id for r in results)
    assert query(db, "SELECT count(*), min(status), max(status) FROM request_log") == [(20, 200, 200)]
    assert holds(db) == []
    await audit_ok(cfg)


async def test_sigterm_cuts_streams_longer_than_the_drain_and_bills_what_was_delivered(
        tmp_path: Path, upstream: FakeOpenAIChat) -> None:
    drain = 1.5
    upstream.mode = "slow_stream:0.1:300"  # 30 s: far longer than the drain
    cfg = write_config(tmp_path, upstream.url, drain=drain)
    db = tmp_path / "relaykit.db"
    key = seed(f"sqlite:///{db}", {"bo": 10 * USD})["bo"]
    loop = asyncio.get_running_loop()
    async with serving(cfg) as relay, aiohttp.ClientSession() as http:
        firsts = [asyncio.Event() for _ in range(3)]
        streams = [asyncio.create_task(stream_chat(http, relay.url, key, first=f)) for f in firsts]
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), 15)
        relay.signal(signal.SIGTERM)
        sent = loop.time()
        results = await asyncio.wait_for(asyncio.gather(*streams), drain + 5)
        cut = loop.time() - sent
        code = await relay.wait_exit(timeout=drain + 5)
        exited = loop.time() - sent
        assert code == 0, relay.stderr
        assert drain - 0.2 <= cut and exited <= drain + 2, (cut, exited)
        assert "Traceback" not in relay.stderr, relay.stderr
    await upstream.wait_idle(timeout=2)  # the upstream requests were cancelled too
    for r in results:  # cut short: an error event or a broken stream, never [DONE]
        assert r.status == 200 and not r.done and (r.error or r.broken), r
        assert r.text.startswith("Hello from fake-openai!")
    # charged for what was delivered, and nothing stays reserved although no restart happened
    assert holds(db) == []
    logs = query(db, "SELECT request_id, completion_tokens, quota, status, estimated FROM request_log")
    billed = charges(db)
    assert len(logs) == 3 and sorted(billed) == sorted(r.request_id for r in results)
    shown = {r.request_id: r.text for r in results}
    for request_id, completion, quota, status, estimated in logs:
        assert status == 503 and estimated == 1
        assert completion == estimate_tokens(shown[request_id]) and billed[request_id] == quota > 0
    audit_in_process(cfg)


# --------------------------------------------------------------------------- SIGHUP


async def chat_status(http: aiohttp.ClientSession, relay: Served, key: str, model: str) -> int:
    async with http.post(relay.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
        await r.read()
        return r.status


async def test_sighup_keeps_the_old_config_when_the_new_one_is_broken_and_loads_a_good_one(
        tmp_path: Path, upstream: FakeOpenAIChat) -> None:
    cfg = write_config(tmp_path, upstream.url, drain=2)
    key = seed(f"sqlite:///{tmp_path / 'relaykit.db'}", {"cy": 10 * USD})["cy"]
    good_text = cfg.read_text()
    async with serving(cfg) as relay, aiohttp.ClientSession() as http:
        assert await chat_status(http, relay, key, "mock-gpt") == 200
        assert await chat_status(http, relay, key, "mock-new") == 404

        # a broken file: refused, the reason on stderr, the old config keeps serving
        cfg.write_text(good_text.replace("mock-gpt: {input: 2, output: 8}",
                                         "mock-gpt: {input: 2, output: 8\n  mock-new: [unclosed"))
        relay.signal(signal.SIGHUP)
        await relay.wait_output(lambda s: "reload refused" in s.stderr, 10, "the refused reload")
        [why] = [ln for ln in relay.err if "reload refused" in ln]
        assert why.startswith("relaykit: reload refused:") and "relaykit.yaml" in why and "line" in why, why
        assert await chat_status(http, relay, key, "mock-gpt") == 200
        assert await chat_status(http, relay, key, "gpt-4o") == 200
        assert await chat_status(http, relay, key, "mock-new") == 404

        # a good file with a new model: picked up without a restart
        write_config(tmp_path, upstream.url, drain=2, extra_models="  mock-new: {input: 1, output: 2}",
                     mock_models="mock-gpt, mock-new")
        relay.signal(signal.SIGHUP)
        await relay.wait_output(lambda s: "reloaded its configuration" in s.stdout, 10, "the reload")
        assert await chat_status(http, relay, key, "mock-new") == 200
        assert await chat_status(http, relay, key, "mock-gpt") == 200
        assert relay.proc.returncode is None
        relay.signal(signal.SIGTERM)
        assert await relay.wait_exit(timeout=10) == 0
        assert "Traceback" not in relay.stderr, relay.stderr
    audit_in_process(cfg)


# --------------------------------------------------------------------------- kill -9


async def load(http: aiohttp.ClientSession, relay: Served, key: str, stop: asyncio.Event,
               done: list[str]) -> None:
    """Non-streamed requests on the mock channel, one after another, until the relay dies;
    the request ids of those the client saw complete go to ``done``."""
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "again and again"}]}
    while not stop.is_set():
        try:
            async with http.post(relay.url + "/v1/chat/completions", json=body,
                                 headers={"Authorization": f"Bearer {key}"}) as r:
                await r.read()
                if r.status == 200:
                    done.append(r.headers["X-Request-Id"])
        except aiohttp.ClientError:
            return


async def test_ten_kill_9_under_load_leave_an_intact_database_and_no_open_hold(
        tmp_path: Path, upstream: FakeOpenAIChat) -> None:
    upstream.mode = "slow_stream:0.1:100"  # streams still live when the kill comes
    cfg = write_config(tmp_path, upstream.url, drain=2)
    db = tmp_path / "relaykit.db"
    key = seed(f"sqlite:///{db}", {"dee": 1000 * USD})["dee"]
    left_open: list[str] = []   # holds the last kill left behind
    completed: list[str] = []   # requests a client saw complete, over all cycles
    async with aiohttp.ClientSession() as http:
        for cycle in range(11):
            relay = await start_serve(cfg)
            try:
                # the start released every hold the kill left, each recorded in the ledger
                assert holds(db) == []
                released = set(r[0] for r in query(db, "SELECT request_id FROM ledger WHERE kind = 'release' "
                                                       "AND note LIKE '%after restart%'"))
                assert set(left_open) <= released
                if cycle == 10:
                    relay.signal(signal.SIGTERM)
                    assert await relay.wait_exit(timeout=10) == 0
                    break
                await upstream.wait_idle(timeout=5)  # the last kill's streams are gone upstream too
                upstream.clear()
                stop = asyncio.Event()
                streams = [asyncio.create_task(stream_chat(http, relay.url, key)) for _ in range(3)]
                done: list[str] = []
                lanes = [asyncio.create_task(load(http, relay, key, stop, done)) for _ in range(3)]
                await upstream.wait_for(lambda: upstream.active >= 3, timeout=15)
                await asyncio.wait_for(_until(lambda: len(done) >= 3 + cycle), 15)
                relay.proc.kill()  # SIGKILL: no drain, no flush, no goodbye
                await relay.wait_exit(timeout=5)
                stop.set()
                got = await asyncio.gather(*streams, *lanes, return_exceptions=True)
                assert not any(isinstance(g, StreamResult) and g.done for g in got)
                completed.extend(done)
            finally:
                await relay.close()
            assert integrity(db) == "ok"
            audit_in_process(cfg)
            left_open = holds(db)
            assert len(left_open) >= 3, left_open  # at least the three live streams were reserved
    # every request a client saw complete was charged exactly once
    billed = query(db, "SELECT request_id, count(*) FROM ledger WHERE kind = 'charge' GROUP BY request_id")
    per_request = dict(billed)
    assert completed and all(per_request.get(rid) == 1 for rid in completed)
    assert integrity(db) == "ok" and holds(db) == []
    audit_in_process(cfg)


async def _until(pred: Callable[[], bool]) -> None:
    while not pred():
        await asyncio.sleep(0.01)


def audit_in_process(cfg: Path) -> None:
    """`relaykit audit` through the CLI's own entry point, in this process (no interpreter
    start-up per cycle); exit status 0 means every balance equals its ledger minus holds."""
    assert main(["audit", "--config", str(cfg)]) == 0
