"""Issue 5 fault matrix: every way an upstream fails gets its documented behaviour, and
the bill is exact.

* Before the first byte reached the client (refused connection, stall before headers,
  429 with Retry-After, 500, 503, reset before headers, a key refused with 401) the relay
  fails over: the client gets the backup's answer and pays exactly the backup's usage.
  With no other channel the client gets the failure in its own dialect: 504 for a
  timeout, 429 (with the upstream's Retry-After) for a rate limit, 502 otherwise, and
  pays nothing.
* A 200 whose body is not what was asked for (an HTML page, truncated JSON) is a 502 and
  costs nothing.
* After the first byte (stall mid-stream, reset mid-stream) the stream ends with an error
  event in the client's dialect, no other channel is tried, and the client pays for the
  tokens it was shown.

Never a 500; never a hold left open (the ``relay_factory`` fixture audits every relay).
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from relaykit.relay.meter import estimate_tokens
from tests.fakes import FakeAnthropic, FakeOpenAIChat, FakeUpstream

from .conftest import OpenAIFactory, StartRelay
from .harness import UPSTREAM_KEY, Relay

USD = 500_000                      # quota units per USD (the default quota_per_usd)
START = 10 * USD
BAD_KEY = "sk-upstream-refused-key-5c1d0e9f8a7b6c5d"
PROMPT = "tell me a story"
# gpt-4o is priced {input: 2.5, output: 10} USD per 1M tokens: SPEC §5 ratio 1.25,
# completion ratio 4, so one prompt token costs 1.25 quota units and one completion 5.
MODEL_RATIO = Decimal("1.25")
COMPLETION_RATIO = 4
# timeouts of the failing channel (seconds): short, so a stall costs the suite little
CONNECT, FIRST_BYTE, IDLE = 0.5, 1.0, 1.0


def expected_quota(prompt_tokens: int, completion_tokens: int) -> int:
    return math.ceil(MODEL_RATIO * (prompt_tokens + COMPLETION_RATIO * completion_tokens))


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def config(primary_url: str, backup_url: str | None = None, *, primary_keys: tuple[str, ...] = (UPSTREAM_KEY,),
           primary_type: str = "openai") -> str:
    keys = ", ".join(f'"{k}"' for k in primary_keys)
    model_map = "model_map: {gpt-4o: claude-sonnet-4-5}, " if primary_type == "anthropic" else ""
    backup = "" if backup_url is None else (
        f'  - {{name: backup, type: openai, base_url: "{backup_url}", keys: ["{UPSTREAM_KEY}"], '
        "models: [gpt-4o], priority: 0}\n")
    return f"""
groups: {{default: {{ratio: 1}}}}
models:
  gpt-4o: {{input: 2.5, output: 10}}
retry: {{max_attempts: 3}}
channels:
  - {{name: primary, type: {primary_type}, base_url: "{primary_url}", keys: [{keys}], models: [gpt-4o],
      {model_map}priority: 10, timeouts: {{connect: {CONNECT}, first_byte: {FIRST_BYTE}, idle: {IDLE}}}}}
{backup}"""


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAIChat]:
    fake = FakeOpenAIChat(keys={UPSTREAM_KEY})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def claude() -> AsyncIterator[FakeAnthropic]:
    fake = FakeAnthropic(keys={UPSTREAM_KEY})
    await fake.start()
    yield fake
    await fake.stop()


@dataclass(frozen=True)
class Fault:
    """One way the primary channel fails before anything reached the client."""

    id: str
    mode: str | None            # the fake's mode; None: the channel points at a closed port
    alone_status: int           # what the client sees when no other channel can serve
    attempt_status: int | None  # the primary's attempt as the request log records it
    refused_key: bool = False   # the primary's (first) key is refused with 401


BEFORE_FIRST_BYTE = [
    Fault("refused-connection", None, 502, 502),
    Fault("stall-before-headers", "stall_before_headers:30", 504, 504),
    Fault("429-retry-after", "status:429:7", 429, 429),
    Fault("500", "status:500", 502, 500),
    Fault("503", "status:503", 502, 503),
    Fault("reset-before-headers", "reset_before_headers", 502, 502),
    Fault("html-instead-of-json", "html_200", 502, 200),  # a proxy's error page
    Fault("401-one-key", None, 502, 401, refused_key=True),
]


def primary_url(fault: Fault, fake: FakeUpstream) -> str:
    if fault.mode is None and not fault.refused_key:
        return closed_port_url()
    if fault.mode is not None:
        fake.mode = fault.mode
    return fake.url


async def chat(client: openai.AsyncOpenAI, *, stream: bool) -> str:
    """One chat completion; the text the client was shown."""
    messages: Any = [{"role": "user", "content": PROMPT}]
    if not stream:
        r = await client.chat.completions.create(model="gpt-4o", messages=messages)
        return r.choices[0].message.content or ""
    parts = []
    s = await client.chat.completions.create(model="gpt-4o", messages=messages, stream=True)
    async for ch in s:
        if ch.choices:
            parts.append(ch.choices[0].delta.content or "")
    return "".join(parts)


def charges(relay: Relay, user: str) -> list[dict[str, Any]]:
    return [e for e in relay.ledger(user) if e["kind"] == "charge"]


def releases(relay: Relay, user: str) -> list[dict[str, Any]]:
    return [e for e in relay.ledger(user) if e["kind"] == "release"]


# --------------------------------------------------------------------------- before the first byte


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", BEFORE_FIRST_BYTE, ids=lambda f: f.id)
async def test_fault_before_the_first_byte_fails_over_and_bills_the_backup_exactly(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, backup: FakeOpenAIChat, oai: OpenAIFactory,
        fault: Fault, stream: bool) -> None:
    keys = (BAD_KEY, UPSTREAM_KEY) if fault.refused_key else (UPSTREAM_KEY,)
    relay = await relay_factory(config(primary_url(fault, fake_openai), backup.url, primary_keys=keys))
    relay.user("ann", quota=START)
    client = oai(relay.base, relay.token("ann"))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    text = await chat(client, stream=stream)
    elapsed = loop.time() - t0

    assert text == f"Hello from fake-openai! You said: {PROMPT}"
    await relay.settled(1)
    [log] = relay.logs()
    attempts = [(a["channel"], a["status"]) for a in json.loads(log["attempts"])]
    if fault.refused_key:
        # the refused key is set aside and the same channel's next key serves
        served_by, upstream = "primary", fake_openai
        assert attempts == [("primary", 401), ("primary", 200)]
        assert [r.headers["Authorization"] for r in fake_openai.requests] == [f"Bearer {BAD_KEY}",
                                                                             f"Bearer {UPSTREAM_KEY}"]
        assert backup.requests == []
    else:
        served_by, upstream = "backup", backup
        assert attempts == [("primary", fault.attempt_status), ("backup", 200)]
        assert len(backup.requests) == 1
        assert len(fake_openai.requests) == (0 if fault.mode is None else 1)  # never the same channel-key twice
    if fault.mode and fault.mode.startswith("stall"):
        # gave up on the primary after its connect + first-byte deadline, and hung up on it
        assert CONNECT + FIRST_BYTE - 0.2 <= elapsed < CONNECT + FIRST_BYTE + 1.5
        await fake_openai.wait_cancelled(1, timeout=2.0)
    assert (log["status"], log["channel"], log["estimated"]) == (200, served_by, False)
    usage = upstream.last_usage
    assert usage is not None
    assert (log["prompt_tokens"], log["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    quota = expected_quota(usage["prompt_tokens"], usage["completion_tokens"])
    assert log["quota"] == quota
    assert relay.balance("ann") == START - quota
    assert [(c["amount"], c["request_id"]) for c in charges(relay, "ann")] == [(-quota, log["request_id"])]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", BEFORE_FIRST_BYTE, ids=lambda f: f.id)
async def test_fault_with_no_other_channel_is_the_documented_status_and_costs_nothing(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, oai: OpenAIFactory, fault: Fault,
        stream: bool) -> None:
    keys = (BAD_KEY,) if fault.refused_key else (UPSTREAM_KEY,)
    relay = await relay_factory(config(primary_url(fault, fake_openai), primary_keys=keys))
    relay.user("bo", quota=START)
    client = oai(relay.base, relay.token("bo"))
    with pytest.raises(openai.APIStatusError) as info:
        await chat(client, stream=stream)
    err = info.value
    assert err.status_code == fault.alone_status
    assert isinstance(err.body, dict) and isinstance(err.body.get("message"), str) and err.body["message"]
    if fault.alone_status == 429:
        assert err.response.headers["Retry-After"] == "7"  # the upstream's own wait, passed on
    if fault.alone_status == 504:
        assert "did not answer within" in err.body["message"]
    if fault.refused_key:
        assert BAD_KEY not in err.response.text and BAD_KEY[-8:] not in err.response.text
    await relay.settled(1)
    [log] = relay.logs()
    assert (log["status"], log["quota"], log["completion_tokens"]) == (fault.alone_status, 0, 0)
    assert relay.balance("bo") == START
    assert charges(relay, "bo") == []
    assert [r["request_id"] for r in releases(relay, "bo")] == [log["request_id"]]


# --------------------------------------------------------------------------- bad bodies


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_truncated_json_is_a_502_and_costs_nothing(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, backup: FakeOpenAIChat, oai: OpenAIFactory,
        stream: bool) -> None:
    """A 200 whose JSON breaks off (``garbage_json``: a cut body, or a stream whose first
    event is cut): the upstream did answer, so it is not retried elsewhere; the client
    gets a 502 (for a stream: the error event after the 200 headers) and pays nothing."""
    fake_openai.mode = "garbage_json"
    relay = await relay_factory(config(fake_openai.url, backup.url))
    relay.user("cy", quota=START)
    client = oai(relay.base, relay.token("cy"))
    with pytest.raises(openai.APIError) as info:
        await chat(client, stream=stream)
    err = info.value
    if stream:  # the relay's own error event, not the upstream's broken bytes
        assert type(err) is openai.APIError
        assert err.message == "The upstream sent a stream event that is not valid JSON."
    else:
        assert isinstance(err, openai.APIStatusError) and err.status_code == 502
        assert err.message and "not JSON" in err.body["message"]
    await relay.settled(1)
    [log] = relay.logs()
    assert (log["status"], log["quota"], log["completion_tokens"]) == (502, 0, 0)
    assert relay.balance("cy") == START and charges(relay, "cy") == []
    assert len(fake_openai.requests) == 1 and backup.requests == []


# --------------------------------------------------------------------------- after the first byte


MID_STREAM = {
    "stall-mid-stream": ("stall_mid_stream:30", 504, f"sent nothing for {IDLE:g} seconds"),
    "reset-mid-stream": ("reset_mid_stream", 502, "broke mid-response"),
}
CLIENT_UPSTREAM = [("openai", "openai"), ("anthropic", "openai"), ("anthropic", "anthropic")]


async def stream_until_error(relay: Relay, key: str, client: str) -> tuple[str, BaseException]:
    """Stream one request with the client's SDK; the text it showed and what it raised."""
    seen: list[str] = []
    try:
        if client == "openai":
            async with openai.AsyncOpenAI(base_url=relay.base, api_key=key, max_retries=0) as c:
                s = await c.chat.completions.create(model="gpt-4o", stream=True,
                                                    messages=[{"role": "user", "content": PROMPT}])
                async for ch in s:
                    if ch.choices:
                        seen.append(ch.choices[0].delta.content or "")
        else:
            async with anthropic.AsyncAnthropic(base_url=relay.url, api_key=key, max_retries=0) as c:
                async with c.messages.stream(model="gpt-4o", max_tokens=256,
                                             messages=[{"role": "user", "content": PROMPT}]) as s:
                    async for text in s.text_stream:
                        seen.append(text)
    except Exception as exc:  # noqa: BLE001 - the test inspects what was raised
        return "".join(seen), exc
    raise AssertionError(f"the stream ended without an error; the client saw {''.join(seen)!r}")


@pytest.mark.parametrize(("client", "upstream"), CLIENT_UPSTREAM, ids=[f"{c}-via-{u}" for c, u in CLIENT_UPSTREAM])
@pytest.mark.parametrize("fault", list(MID_STREAM))
async def test_fault_after_the_first_byte_is_an_error_event_billed_for_what_was_delivered(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, claude: FakeAnthropic, backup: FakeOpenAIChat,
        client: str, upstream: str, fault: str) -> None:
    mode, status, message = MID_STREAM[fault]
    primary: FakeUpstream = claude if upstream == "anthropic" else fake_openai
    primary.mode = mode
    relay = await relay_factory(config(primary.url, backup.url, primary_type=upstream))
    relay.user("di", quota=START)
    key = relay.token("di")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    text, exc = await stream_until_error(relay, key, client)
    elapsed = loop.time() - t0

    # the client saw a beginning of the answer (the fakes fault after 3 or 5 SSE events:
    # two words of an OpenAI stream; an Anthropic stream has no text yet at its 3rd event,
    # and a reset may take unread bytes with it), then its SDK raised the relay's error event
    full = f"Hello from fake-{primary.vendor}! You said: {PROMPT}"
    assert full.startswith(text) and text != full, text
    if fault == "stall-mid-stream" and upstream == "openai":
        assert text == "Hello from"
    if client == "openai":
        assert isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIStatusError), repr(exc)
        assert message in exc.message
    else:
        assert isinstance(exc, anthropic.APIStatusError), repr(exc)
        assert exc.body["type"] == "error" and message in exc.body["error"]["message"]
        assert exc.body["error"]["type"] in ("api_error", "timeout_error", "overloaded_error")
    if fault == "stall-mid-stream":
        assert elapsed < IDLE + 2.0
    # output had started: no other channel was tried
    assert len(primary.requests) == 1 and backup.requests == []
    await primary.wait_idle(timeout=2.0)  # and the broken upstream connection is not kept
    await relay.settled(1)
    [log] = relay.logs()
    assert (log["status"], log["channel"]) == (status, "primary")
    # billed for what was delivered: the shown text by relaykit's counting rule (ASCII: 4
    # characters a token) and the prompt by the same rule plus 4 per message; nothing
    # when nothing was shown
    assert log["completion_tokens"] == estimate_tokens(text)
    if text:
        assert log["estimated"] and log["prompt_tokens"] == estimate_tokens(PROMPT) + 4
        quota = expected_quota(log["prompt_tokens"], log["completion_tokens"])
        assert log["quota"] == quota
        assert [(c["amount"], c["request_id"]) for c in charges(relay, "di")] == [(-quota, log["request_id"])]
    else:
        quota = 0
        assert log["quota"] == 0 and charges(relay, "di") == []
        assert [r["request_id"] for r in releases(relay, "di")] == [log["request_id"]]
    assert relay.balance("di") == START - quota


async def test_many_faulty_requests_at_once_leave_no_hold_and_no_500(
        relay_factory: StartRelay, fake_openai: FakeOpenAIChat, backup: FakeOpenAIChat) -> None:
    """A burst mixing every fault over raw HTTP: only 200/429/502/504 (or an error event),
    one settlement per request, and the ledger agrees with the balances."""
    fake_openai.script = ["status:500", "status:503", "reset_before_headers", "html_200", "garbage_json",
                          "stall_mid_stream:30", "reset_mid_stream", "status:429:1", "ok", "ok"] * 3
    relay = await relay_factory(config(fake_openai.url))
    relay.user("ed", quota=START)
    key = relay.token("ed")
    n = len(fake_openai.script)

    async def one(http: aiohttp.ClientSession, stream: bool) -> tuple[int, bytes]:
        body = {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
        async with http.post(relay.base + "/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {key}"}) as r:
            return r.status, await r.read()

    async with aiohttp.ClientSession() as http:
        got = await asyncio.gather(*(one(http, i % 2 == 0) for i in range(n)))
    statuses = sorted({s for s, _ in got})
    assert set(statuses) <= {200, 429, 502, 504}, statuses
    assert all(b"Traceback" not in b for _, b in got)
    await relay.settled(n)
    logs = relay.logs()
    assert len(logs) == n and 500 not in {lg["status"] for lg in logs}
    spent = sum(lg["quota"] for lg in logs)
    assert relay.balance("ed") == START - spent
    assert sum(-c["amount"] for c in charges(relay, "ed")) == spent
    assert len(charges(relay, "ed")) + len(releases(relay, "ed")) == n
