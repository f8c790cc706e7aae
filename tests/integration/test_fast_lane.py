"""The fast lane (server/fastlane.py) on raw sockets: what it serves itself, what it hands
to aiohttp (with the bytes it had read), pipelining, keep-alive, errors, streams with
backpressure, metrics and the access log.

Lane answers carry no ``Server`` header; aiohttp's carry ``Server: Python/... aiohttp/...``:
that is how these tests see which side answered.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web

from relaykit.server import fastlane
from tests.fakes import FakeOpenAIChat

from .conftest import StartRelay, openai_config
from .harness import UPSTREAM_KEY, Relay

USD = 500_000
CHAT = {"model": "mock-gpt", "messages": [{"role": "user", "content": "ping"}]}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer: status, lower-cased headers, body (Content-Length or chunked)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)).strip(), 16)
            data = await asyncio.wait_for(reader.readexactly(size + 2), 10)
            if size == 0:
                return status, headers, body
            body += data[:-2]
    n = int(headers.get("content-length", "0"))
    return status, headers, await asyncio.wait_for(reader.readexactly(n), 10)


def chat_request(key: str, body: bytes | None = None, *, target: str = "/v1/chat/completions",
                 extra: str = "", version: str = "HTTP/1.1") -> bytes:
    body = orjson.dumps(CHAT) if body is None else body
    return (f"POST {target} {version}\r\nHost: relay\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


@pytest.fixture
async def relay(relay_factory: StartRelay, fake_openai: FakeOpenAIChat) -> Relay:
    r = await relay_factory(openai_config(fake_openai.url))
    r.user("ann", quota=10 * USD)
    return r


@pytest.fixture
async def conn(relay: Relay) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = relay.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    yield reader, writer
    writer.close()


async def test_lane_serves_chat_then_hands_a_keep_alive_connection_to_aiohttp(relay: Relay, conn) -> None:
    reader, writer = conn
    key = relay.token("ann")
    writer.write(chat_request(key))
    status, headers, body = await read_response(reader)
    assert status == 200 and "server" not in headers and headers["date"].endswith("GMT")
    assert orjson.loads(body)["choices"][0]["message"]["content"].endswith("You said: ping")
    assert headers["content-type"] == "application/json" and headers["x-request-id"]

    # the same connection asks for the model list: aiohttp answers it, with the right body
    writer.write(f"GET /v1/models HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer {key}\r\n\r\n".encode())
    status, headers, body = await read_response(reader)
    assert status == 200 and "aiohttp" in headers["server"]
    assert "mock-gpt" in [m["id"] for m in orjson.loads(body)["data"]]

    # and from then on aiohttp serves the connection, chat included
    writer.write(chat_request(key))
    status, headers, body = await read_response(reader)
    assert status == 200 and "aiohttp" in headers["server"]
    await relay.settled(2)
    assert [lg["status"] for lg in relay.logs()] == [200, 200]


async def test_pipelined_requests_are_answered_in_order(relay: Relay, conn) -> None:
    reader, writer = conn
    key = relay.token("ann")
    first = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "first"}]})
    second = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "second"}]})
    writer.write(chat_request(key, first) + chat_request(key, second) + chat_request(key, b"{broken"))
    said = []
    for _ in range(2):
        status, headers, body = await read_response(reader)
        assert status == 200 and "server" not in headers
        said.append(orjson.loads(body)["choices"][0]["message"]["content"].rsplit(" ", 1)[-1])
    assert said == ["first", "second"]
    status, _, body = await read_response(reader)
    assert status == 400 and orjson.loads(body)["error"]["message"] == "The request body is not valid JSON."
    await relay.settled(2)


@pytest.mark.parametrize("case", ["chunked", "expect", "query", "http10", "duplicate", "obs_fold", "gzip"])
async def test_what_the_lane_does_not_parse_goes_to_aiohttp_whole(relay: Relay, conn, case: str) -> None:
    reader, writer = conn
    key = relay.token("ann")
    body = orjson.dumps(CHAT)
    if case == "chunked":
        raw = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               f"{len(body):x}\r\n").encode() + body + b"\r\n0\r\n\r\n"
    elif case == "expect":
        raw = chat_request(key, extra="Expect: 100-continue\r\n")
    elif case == "query":
        raw = chat_request(key, target="/v1/chat/completions?trace=a%20b")  # encoded: aiohttp decodes it
    elif case == "http10":
        raw = chat_request(key, version="HTTP/1.0")
    elif case == "duplicate":
        raw = chat_request(key, extra=f"Authorization: Bearer {key}\r\n")
    elif case == "obs_fold":
        raw = chat_request(key, extra="X-Folded: one\r\n  two\r\n")
    else:
        raw = chat_request(key, extra="Content-Encoding: gzip\r\n")
    writer.write(raw)
    status, headers, resp = await read_response(reader)
    if case == "expect":  # aiohttp sent its interim answer first
        assert status == 100
        status, headers, resp = await read_response(reader)
    assert "aiohttp" in headers.get("server", ""), f"the lane answered a {case} request itself"
    if case == "obs_fold":
        assert status == 400  # aiohttp's own verdict on what the lane would not parse
    elif case == "gzip":  # a body that is not the gzip it claims: the client's fault, in its dialect
        assert status == 400
        assert orjson.loads(resp)["error"]["message"].startswith("The request body could not be read as gzip")
    else:
        assert status == 200, resp
        assert orjson.loads(resp)["choices"][0]["message"]["content"].endswith("You said: ping")
        await relay.settled(1)


async def test_anthropic_and_responses_requests_ride_the_lane_with_their_own_error_shapes(relay: Relay,
                                                                                        conn) -> None:
    reader, writer = conn
    key = relay.token("ann")
    message = orjson.dumps({"model": "mock-gpt", "max_tokens": 64,
                            "messages": [{"role": "user", "content": "ping"}]})
    # Claude Code's request line: /v1/messages?beta=true
    writer.write(chat_request(key, message, target="/v1/messages?beta=true",
                              extra="anthropic-version: 2023-06-01\r\n"))
    status, headers, body = await read_response(reader)
    assert status == 200 and "server" not in headers
    answer = orjson.loads(body)
    assert answer["type"] == "message" and answer["content"][0]["text"].endswith("You said: ping")

    writer.write(chat_request("sk-not-a-key-of-this-relay", message, target="/v1/messages"))
    status, headers, body = await read_response(reader)
    assert status == 401 and "server" not in headers
    err = orjson.loads(body)
    assert err["type"] == "error" and err["error"]["type"] == "authentication_error"

    writer.write(chat_request(key, orjson.dumps({"model": "mock-gpt", "input": "ping"}), target="/v1/responses"))
    status, headers, body = await read_response(reader)
    assert status == 200 and "server" not in headers
    assert orjson.loads(body)["object"] == "response"

    writer.write(chat_request(key, orjson.dumps({"model": "mock-gpt"}), target="/v1/responses"))
    status, _, body = await read_response(reader)
    assert status == 400 and orjson.loads(body)["error"]["message"] == "The 'input' field is required."
    await relay.settled(2)
    assert sorted(lg["dialect"] for lg in relay.logs()) == ["anthropic", "openai_responses"]


async def test_an_oversized_body_is_refused_in_the_openai_format(relay_factory: StartRelay,
                                                                 fake_openai: FakeOpenAIChat) -> None:
    relay = await relay_factory("server: {max_body_mb: 0.001}\n" + openai_config(fake_openai.url))
    relay.user("ann", quota=USD)
    host, port = relay.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        big = orjson.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]})
        writer.write(chat_request(relay.token("ann"), big))
        status, _, body = await read_response(reader)
        assert status == 413
        assert "larger than the relay accepts" in orjson.loads(body)["error"]["message"]
    finally:
        writer.close()


async def test_errors_in_the_lane_keep_the_connection_and_the_dialect(relay: Relay, conn) -> None:
    reader, writer = conn
    key = relay.token("ann")
    writer.write(chat_request("sk-not-a-key-of-this-relay"))
    status, headers, body = await read_response(reader)
    assert status == 401 and "server" not in headers
    assert orjson.loads(body)["error"]["type"]
    writer.write(chat_request(key, orjson.dumps({**CHAT, "model": "no-such-model"})))
    status, _, body = await read_response(reader)
    assert status == 404 and "no-such-model" in orjson.loads(body)["error"]["message"]
    writer.write(chat_request(key, b""))
    status, _, body = await read_response(reader)
    assert status == 400 and "empty" in orjson.loads(body)["error"]["message"]
    writer.write(chat_request(key))  # still the same connection
    assert (await read_response(reader))[0] == 200
    await relay.settled(1)


async def test_connection_close_is_honoured(relay: Relay, conn) -> None:
    reader, writer = conn
    writer.write(chat_request(relay.token("ann"), extra="Connection: close\r\n"))
    status, _, _ = await read_response(reader)
    assert status == 200
    assert await asyncio.wait_for(reader.read(), 10) == b""  # the lane closed it
    await relay.settled(1)


async def test_idle_connections_are_closed_after_the_keep_alive_limit(relay: Relay, conn,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    reader, writer = conn
    writer.write(chat_request(relay.token("ann")))
    assert (await read_response(reader))[0] == 200
    # the sweep that is already scheduled runs within SWEEP_SECONDS; from then on it sees 0 s limits
    monkeypatch.setattr(fastlane, "KEEPALIVE_SECONDS", 0.0)
    monkeypatch.setattr(fastlane, "SWEEP_SECONDS", 0.05)
    assert await asyncio.wait_for(reader.read(), fastlane.SWEEP_SECONDS + 10) == b""
    await relay.settled(1)


async def test_streams_are_chunked_and_counted_with_the_access_log(relay_factory: StartRelay,
                                                                   fake_openai: FakeOpenAIChat) -> None:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    relay = await relay_factory("ops: {access_log: true}\n" + openai_config(fake_openai.url))
    relay.user("ann", quota=10 * USD)
    keep = Keep()
    logging.getLogger("relaykit.access").addHandler(keep)
    host, port = relay.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(chat_request(relay.token("ann"), orjson.dumps({**CHAT, "stream": True}),
                                  extra="User-Agent: lane-test/1\r\n"))
        status, headers, body = await read_response(reader)
    finally:
        writer.close()
        logging.getLogger("relaykit.access").removeHandler(keep)
    assert status == 200 and headers["transfer-encoding"] == "chunked" and "server" not in headers
    assert headers["content-type"] == "text/event-stream"
    events = [e for e in body.decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    text = "".join(orjson.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if orjson.loads(e[6:])["choices"])
    assert text.endswith("You said: ping")
    await relay.settled(1)
    entry = orjson.loads(next(line for line in lines if "/v1/chat/completions" in line))
    assert entry["status"] == 200 and entry["route"] == "/v1/chat/completions"
    assert entry["request_id"] == headers["x-request-id"] and entry["user_agent"] == "lane-test/1"
    assert entry["bytes"] == len(body)
    async with aiohttp.ClientSession() as http:
        async with http.get(relay.url + "/metrics") as resp:
            metrics = await resp.text()
    assert 'relaykit_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0' in metrics


async def test_a_client_that_stops_reading_pauses_the_stream_end_to_end(relay_factory: StartRelay) -> None:
    """Backpressure: the lane stops pulling from the upstream while the client's socket is
    full (the upstream cannot finish), and every byte arrives once the client reads."""
    piece = "y" * 20_000
    count = 600  # 12 MB: more than loopback's socket buffers hold
    finished = asyncio.Event()

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
        for _ in range(count):
            await resp.write(b"data: " + orjson.dumps({**base, "choices": [
                {"index": 0, "delta": {"content": piece}, "finish_reason": None}]}) + b"\n\n")
        await resp.write(b"data: " + orjson.dumps({**base, "choices": [], "usage": {
            "prompt_tokens": 3, "completion_tokens": count, "total_tokens": 3 + count}}) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        finished.set()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    try:
        relay = await relay_factory(openai_config(up))
        relay.user("ann", quota=1000 * USD)
        host, port = relay.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        writer.write(chat_request(relay.token("ann"), orjson.dumps({
            "model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "go"}]})))
        lane = next(iter(relay.runner.sites)).lane  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not any(c._write_paused for c in lane.conns):  # noqa: SLF001 - waiting for the pause itself
            assert loop.time() < deadline, "the lane never paused although the client reads nothing"
            await asyncio.sleep(0.01)
        paused = next(c for c in lane.conns if c._write_paused)  # noqa: SLF001
        # without backpressure the relay would drain the upstream into its own buffer: 12 MB
        # over loopback take milliseconds, so a second with the upstream unfinished says it waits
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(finished.wait(), 1.0)
        assert paused.transport is not None and paused.transport.get_write_buffer_size() < 1_000_000
        status, _, body = await read_response(reader)
        writer.close()
        assert status == 200 and finished.is_set()
        text = "".join(orjson.loads(e[6:])["choices"][0]["delta"]["content"]
                       for e in body.decode().split("\n\n") if e.startswith("data: {") and '"delta"' in e)
        assert text == piece * count
        await relay.settled(1)
        assert relay.logs()[0]["completion_tokens"] == count
    finally:
        await runner.cleanup()


async def test_a_lane_request_in_flight_finishes_before_the_site_stops(relay: Relay, fake_openai: FakeOpenAIChat,
                                                                       conn) -> None:
    reader, writer = conn
    fake_openai.mode = "slow_stream:0.05:6"
    writer.write(chat_request(relay.token("ann"), orjson.dumps({**CHAT, "model": "gpt-4o", "stream": True})))
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # the stream has begun
    site = next(iter(relay.runner.sites))
    stopping = asyncio.ensure_future(site.stop())
    rest = await asyncio.wait_for(reader.read(), 10)  # the connection closes after the last chunk
    await stopping
    assert rest.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    await relay.settled(1)
    assert relay.logs()[0]["status"] == 200
    assert UPSTREAM_KEY not in rest.decode()
