"""The lean HTTP/1.1 upstream client (relaykit/relay/http1.py), driven through
``UpstreamPool.post`` and ``Http1Pool`` against raw asyncio servers on 127.0.0.1 whose
bytes the tests write by hand.

Covered: the exact request bytes (request line, Host with port, Content-Length, the
caller's headers, the body, also above the 64 KiB split); Content-Length, chunked and
close-delimited bodies; truncated bodies; gzip and deflate; keep-alive reuse (and no
reuse after an unread, partly read, ``Connection: close`` or over-limit reply); the one
retry of a stale keep-alive connection; refused connections and a close without an
answer; the header (connect + first_byte) and idle deadlines; CR/LF in headers; malformed
responses; case-insensitive headers and statuses; read-side backpressure on a large
body; ``read(limit)``; cancellation; concurrent requests; ``close()`` of the pool.

"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import random
import socket
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from multidict import CIMultiDictProxy

from relaykit.domain import Timeouts
from relaykit.errors import UpstreamError, UpstreamTimeout
from relaykit.relay.http1 import HIGH_WATER, Http1Pool
from relaykit.relay.upstream import UpstreamPool

from .rawserver import (
    CHUNKED_HEAD,
    LAST_CHUNK,
    WAIT,
    Handler,
    RawServer,
    ServerConn,
    T,
    chunk,
    keepalive_handler,
    post,
    post_read,
    response,
    serving,
    upstream_pool,
)

# ---------------------------------------------------------------------------- raw servers (tests/unit/rawserver.py)

Serve = Callable[[Handler], Awaitable[RawServer]]


async def answer_once(conn: ServerConn, data: bytes) -> None:
    """Send ``data`` for the first request, then hold the connection until the client closes it."""
    if await conn.read_request() is not None:
        await conn.send(data)
        await conn.wait_eof()


async def first_error(pool: UpstreamPool, server: RawServer, timeouts: Timeouts = T) -> UpstreamError:
    """The UpstreamError a caller meets first: from post(), else from read()."""
    try:
        reply = await post(pool, server, timeouts=timeouts)
    except UpstreamError as exc:
        return exc
    try:
        body = await reply.read()
    except UpstreamError as exc:
        return exc
    finally:
        reply.close()
    raise AssertionError(f"no error; status {reply.status}, body {body!r}")


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts plain (http://) servers; each is stopped after the test."""
    async with AsyncExitStack() as servers:
        async def start(handler: Handler) -> RawServer:
            return await servers.enter_async_context(serving(handler))

        yield start


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    async with upstream_pool() as p:
        yield p


# ---------------------------------------------------------------------------- 1. request bytes, Content-Length body


@pytest.mark.parametrize("size", [0, 7, 65535, 65536, 300_000], ids=lambda n: f"body{n}")
async def test_request_arrives_exactly_and_content_length_body_is_read_whole(
        serve: Serve, pool: UpstreamPool, size: int) -> None:
    body = random.Random(size).randbytes(size)  # bytes >= 64 KiB go in a second write
    answer = b'{"id":"x","choices":[]}' * 500
    server = await serve(lambda conn: answer_once(conn, response(answer, headers=[("Content-Type", "text/json")])))
    headers = {"Authorization": "Bearer sk-test", "Content-Type": "application/json", "X-Trace": "a b;c=d"}
    reply = await pool.post(server.url("/v1/chat/completions?stream=1&x=%20"), headers=headers, body=body, timeouts=T)
    try:
        assert reply.status == 200
        assert await reply.read() == answer
    finally:
        reply.close()
    (req,) = server.requests
    assert req.head == (f"POST /v1/chat/completions?stream=1&x=%20 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                        f"Content-Length: {size}\r\nAuthorization: Bearer sk-test\r\nContent-Type: application/json\r\n"
                        "X-Trace: a b;c=d\r\n\r\n").encode()
    assert req.body == body


async def test_empty_body_answer_reads_as_empty_and_keeps_the_connection(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(response(b"", status=204, reason="No Content", length=False))

    server = await serve(handler)
    for _ in range(2):
        reply = await post(pool, server)
        assert reply.status == 204
        assert await reply.read() == b""
        reply.close()
    assert len(server.conns) == 1 and len(server.requests) == 2


# ---------------------------------------------------------------------------- 2. chunked


async def test_chunked_body_arrives_chunk_by_chunk(serve: Serve, pool: UpstreamPool) -> None:
    got_first = asyncio.Event()

    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await got_first.wait()  # the second chunk only exists once the client holds the first
        await conn.send(chunk(b"data: two\n\n"))
        await conn.send(LAST_CHUNK)
        await conn.wait_eof()

    server = await serve(handler)
    reply = await post(pool, server)
    try:
        assert reply.headers["Transfer-Encoding"] == "chunked"
        it = reply.chunks()
        assert await anext(it) == b"data: one\n\n"
        got_first.set()
        assert await anext(it) == b"data: two\n\n"
        with pytest.raises(StopAsyncIteration):
            await anext(it)
    finally:
        reply.close()


async def test_chunked_body_read_joins_the_chunks(serve: Serve, pool: UpstreamPool) -> None:
    parts = [b"alpha ", b"beta " * 1000, b"gamma"]

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(CHUNKED_HEAD)
            for p in parts:
                await conn.send(chunk(p))
            await conn.send(LAST_CHUNK)

    server = await serve(handler)
    assert await post_read(pool, server) == b"".join(parts)
    assert await post_read(pool, server) == b"".join(parts)
    assert len(server.conns) == 1, "a fully read chunked reply leaves a reusable connection"


# ---------------------------------------------------------------------------- 3. close-delimited, truncated bodies


async def test_close_delimited_body_is_read_to_the_end(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await conn.send(b"second part" * 1000)
        conn.close()

    server = await serve(handler)
    reply = await post(pool, server)
    assert reply.status == 200
    assert await reply.read() == b"first part, " + b"second part" * 1000
    reply.close()
    assert await post_read(pool, server) == b"first part, " + b"second part" * 1000
    assert len(server.conns) == 2, "a close-delimited reply's connection is not reused"


@pytest.mark.parametrize("sent", [
    response(b"x" * 100)[:-90],  # Content-Length: 100, 10 bytes, then the close
    CHUNKED_HEAD + chunk(b"hello"),  # no last chunk
], ids=["content-length", "chunked"])
async def test_body_cut_short_by_a_close_is_an_error_not_a_short_body(
        serve: Serve, pool: UpstreamPool, sent: bytes) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(sent)
        conn.close()

    server = await serve(handler)
    err = await first_error(pool, server)
    assert type(err) is UpstreamError and not err.retryable


# ---------------------------------------------------------------------------- 4. gzip, deflate

TEXT = b"".join(b'{"index": %d, "text": "the quick brown fox"}\n' % i for i in range(3000))


@pytest.mark.parametrize("encoding,framing", [
    ("gzip", "content-length"), ("gzip", "chunked"), ("x-gzip", "content-length"),
    ("deflate", "content-length"), ("deflate", "chunked"), ("gzip", "close"),
])
async def test_gzip_and_deflate_bodies_are_decoded(
        serve: Serve, pool: UpstreamPool, encoding: str, framing: str) -> None:
    packed = gzip.compress(TEXT) if "gzip" in encoding else zlib.compress(TEXT)
    assert len(packed) < len(TEXT) // 5

    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        head = [("Content-Type", "application/json"), ("Content-Encoding", encoding)]
        if framing == "content-length":
            await conn.send(response(packed, headers=head))
            await conn.wait_eof()
        elif framing == "chunked":
            await conn.send(response(headers=[*head, ("Transfer-Encoding", "chunked")], length=False))
            third = len(packed) // 3  # split mid-stream: the decoder must carry state across chunks
            for part in (packed[:third], packed[third:2 * third], packed[2 * third:]):
                await conn.send(chunk(part))
            await conn.send(LAST_CHUNK)
            await conn.wait_eof()
        else:
            await conn.send(response(packed, headers=head, length=False))
            conn.close()

    server = await serve(handler)
    assert await post_read(pool, server) == TEXT


@pytest.mark.parametrize("framing", ["content-length", "chunked", "close"])
async def test_a_body_that_does_not_decompress_is_an_error(serve: Serve, pool: UpstreamPool, framing: str) -> None:
    junk = b"this is not gzip at all, just text"

    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        head = [("Content-Encoding", "gzip")]
        if framing == "content-length":
            await conn.send(response(junk, headers=head))
        elif framing == "chunked":
            await conn.send(response(headers=[*head, ("Transfer-Encoding", "chunked")], length=False)
                            + chunk(junk) + LAST_CHUNK)
        else:  # no length: the body would end with the server's close, but the client gives up first
            await conn.send(response(junk, headers=head, length=False))
        await conn.wait_eof()

    server = await serve(handler)
    reply = await post(pool, server)
    try:
        assert reply.status == 200
        # the client drops the connection as soon as the body fails to decode (this part holds) ...
        await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)
        # ... and a caller that reads the body after that must still learn that it is broken
        with pytest.raises(UpstreamError):
            await reply.read()
    finally:
        reply.close()


# ---------------------------------------------------------------------------- 5. keep-alive reuse


@pytest.mark.parametrize("consume", ["read", "chunks"])
async def test_a_fully_read_reply_leaves_its_connection_for_the_next_request(
        serve: Serve, pool: UpstreamPool, consume: str) -> None:
    server = await serve(keepalive_handler)
    got = []
    for body in (b"one", b"two", b"three"):
        reply = await post(pool, server, body)
        got.append(await reply.read() if consume == "read" else b"".join([c async for c in reply.chunks()]))
        reply.close()
    assert got == [b"conn 0 req 1: one", b"conn 0 req 2: two", b"conn 0 req 3: three"]
    assert len(server.conns) == 1
    assert not server.conns[0].eof.is_set(), "the idle connection stays open"


async def test_a_reply_closed_unread_is_not_reused(serve: Serve, pool: UpstreamPool) -> None:
    server = await serve(keepalive_handler)
    reply = await post(pool, server, b"one")
    assert reply.status == 200
    reply.close()  # the body was sent with the headers, but nobody read it
    assert await post_read(pool, server, b"two") == b"conn 1 req 1: two"
    assert len(server.conns) == 2
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)  # and the first connection was closed


async def test_a_reply_closed_after_part_of_its_body_is_not_reused(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(CHUNKED_HEAD + chunk(b"part one"))
            if conn.index > 0:
                await conn.send(LAST_CHUNK)

    server = await serve(handler)
    reply = await post(pool, server)
    it = reply.chunks()
    assert await anext(it) == b"part one"
    await it.aclose()
    reply.close()
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)
    assert await post_read(pool, server) == b"part one"
    assert len(server.conns) == 2


async def test_connection_close_from_the_server_is_honoured(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:  # says close, but leaves the socket open
        while await conn.read_request() is not None:
            await conn.send(response(b"bye", headers=[("Connection", "close")]))

    server = await serve(handler)
    assert await post_read(pool, server) == b"bye"
    assert await post_read(pool, server) == b"bye"
    assert len(server.conns) == 2
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)


async def test_concurrent_requests_get_their_own_answers(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        while (req := await conn.read_request()) is not None:
            await conn.send(response(b"echo " + req.body))

    server = await serve(handler)
    for wave in range(2):
        bodies = [f"wave {wave} request {i}".encode() for i in range(20)]
        got = await asyncio.gather(*(post_read(pool, server, b) for b in bodies))
        assert got == [b"echo " + b for b in bodies]
    assert len(server.conns) <= 20, "the second wave reuses the first wave's connections"


# ---------------------------------------------------------------------------- 6. stale keep-alive


async def test_server_closing_an_idle_connection_costs_nothing(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:  # keep-alive in words, then closes right after
        if (req := await conn.read_request()) is not None:
            await conn.send(response(b"answer to " + req.body))
        conn.close()

    server = await serve(handler)
    assert await post_read(pool, server, b"one") == b"answer to one"
    assert await post_read(pool, server, b"two") == b"answer to two"
    assert len(server.conns) == 2


async def test_stale_keepalive_connection_is_retried_once_on_a_fresh_one(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:  # answers once, then takes the next request and closes without a byte
            await conn.read_request()
            await conn.send(response(b"first"))
            await conn.read_request()
            conn.close()
        else:
            await keepalive_handler(conn)

    server = await serve(handler)
    assert await post_read(pool, server, b"one") == b"first"
    assert await post_read(pool, server, b'{"second": true}') == b'conn 1 req 1: {"second": true}'
    assert len(server.conns) == 2
    dropped, retried = server.conns[0].requests[1], server.conns[1].requests[0]
    assert (retried.head, retried.body) == (dropped.head, dropped.body), "the retry sends the same bytes"


async def test_stale_connection_retry_happens_only_once(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        if conn.index == 0:
            await conn.send(response(b"first"))
            await conn.read_request()
        conn.close()  # every later request is dropped unanswered

    server = await serve(handler)
    assert await post_read(pool, server) == b"first"
    err = await first_error(pool, server)
    assert type(err) is UpstreamError
    assert len(server.conns) == 2, "one retry, on one fresh connection"


# ---------------------------------------------------------------------------- 7. no answer, refused


async def test_fresh_connection_closed_without_an_answer_is_an_error_and_not_retried(
        serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        conn.close()

    server = await serve(handler)
    with pytest.raises(UpstreamError) as info:
        await post(pool, server)
    assert type(info.value) is UpstreamError
    assert len(server.conns) == 1, "a POST that a fresh connection dropped is not sent again"


async def test_refused_connection_is_an_upstream_error(pool: UpstreamPool) -> None:
    with pytest.raises(UpstreamError) as info:
        await pool.post(f"http://127.0.0.1:{free_port()}/v1/x", headers={}, body=b"{}", timeouts=T)
    assert type(info.value) is UpstreamError


# ---------------------------------------------------------------------------- 8. deadlines


async def test_headers_not_in_within_connect_plus_first_byte_time_out(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.wait_eof()  # never answers

    server = await serve(handler)
    started = time.monotonic()
    async with asyncio.timeout(WAIT):  # a regression fails the test instead of hanging it
        with pytest.raises(UpstreamTimeout):
            await post(pool, server, timeouts=Timeouts(connect=0.3, first_byte=0.1, idle=5.0))
    assert 0.35 <= time.monotonic() - started < 3.0  # connect + first_byte (0.4 s), not first_byte alone
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)  # the connection is given up, not pooled


async def test_a_response_head_cut_midway_times_out(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")  # no blank line, ever
        await conn.wait_eof()

    server = await serve(handler)
    started = time.monotonic()
    async with asyncio.timeout(WAIT):
        with pytest.raises(UpstreamTimeout):
            await post(pool, server, timeouts=Timeouts(connect=0.2, first_byte=0.2, idle=5.0))
    assert time.monotonic() - started < 3.0


async def test_body_stalling_longer_than_idle_times_out(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(CHUNKED_HEAD + chunk(b"data: one\n\n"))
        await conn.wait_eof()  # then stalls

    server = await serve(handler)
    reply = await post(pool, server, timeouts=Timeouts(connect=5.0, first_byte=5.0, idle=0.3))
    try:
        it = reply.chunks()
        assert await anext(it) == b"data: one\n\n"
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            with pytest.raises(UpstreamTimeout):
                await anext(it)
        assert 0.25 <= time.monotonic() - started < 3.0
    finally:
        reply.close()
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)


# ---------------------------------------------------------------------------- 9. CR/LF in headers


@pytest.mark.parametrize("headers", [
    {"X-Note": "a\r\nX-Injected: 1"},
    {"X-Note": "a\nX-Injected: 1"},
    {"X-Note": "a\rX-Injected: 1"},
    {"X-Injected: 1\r\nX-Note": "a"},
    {"X-Injected: 1": "a"},
], ids=["crlf-value", "lf-value", "cr-value", "crlf-name", "colon-name"])
async def test_line_break_in_a_header_is_refused_and_nothing_is_sent(
        serve: Serve, pool: UpstreamPool, headers: dict[str, str]) -> None:
    server = await serve(keepalive_handler)
    with pytest.raises(UpstreamError) as info:
        await pool.post(server.url(), headers={"Authorization": "Bearer k", **headers}, body=b"{}", timeouts=T)
    assert not info.value.retryable
    assert await post_read(pool, server, b"ok") == b"conn 0 req 1: ok"
    assert len(server.conns) == 1 and len(server.requests) == 1  # only the good request ever reached it
    assert b"X-Injected" not in server.requests[0].head


# ---------------------------------------------------------------------------- 10. malformed responses


@pytest.mark.parametrize("sent", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
], ids=["not-http", "bad-status", "bad-length", "bad-header", "bad-chunk-size"])
async def test_malformed_response_is_an_upstream_error(serve: Serve, pool: UpstreamPool, sent: bytes) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(sent)
        await conn.wait_eof()  # the server stays: the error must come from parsing, not from a close

    server = await serve(handler)
    err = await first_error(pool, server)
    assert type(err) is UpstreamError and not err.retryable
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)  # the broken connection is dropped


async def test_unexpected_protocol_switch_is_an_upstream_error(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await conn.wait_eof()

    server = await serve(handler)
    err = await first_error(pool, server)
    assert type(err) is UpstreamError


async def test_bytes_after_a_complete_response_do_not_change_it(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(response(b"first", headers=[("X-Which", "first")])
                        + response(b"second", status=500, reason="Oops", headers=[("X-Which", "second")]))
        await conn.wait_eof()

    server = await serve(handler)
    reply = await post(pool, server)
    try:
        assert (reply.status, reply.headers.get("X-Which"), await reply.read()) == (200, "first", b"first")
    finally:
        reply.close()


# ---------------------------------------------------------------------------- 11. status and headers


async def test_status_and_case_insensitive_headers(serve: Serve, pool: UpstreamPool) -> None:
    body = b'{"error": {"type": "rate_limit"}}'

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            await conn.send(response(body, status=429, reason="Too Many Requests", headers=[
                ("retry-after", "7"), ("CONTENT-TYPE", "application/json"),
                ("X-RateLimit-Remaining", "0"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]))

    server = await serve(handler)
    reply = await post(pool, server)
    try:
        assert reply.status == 429
        assert reply.headers["Retry-After"] == "7"
        assert reply.headers.get("content-type") == "application/json"
        assert reply.headers.get("x-ratelimit-remaining") == "0"
        assert reply.headers.get("X-Absent") is None
        assert isinstance(reply.headers, CIMultiDictProxy)
        assert reply.headers.getall("set-cookie") == ["a=1", "b=2"]
        assert await reply.read() == body
    finally:
        reply.close()
    assert len(server.conns) == 1


@pytest.mark.parametrize("interim", [
    b"HTTP/1.1 100 Continue\r\n\r\n",
    b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
], ids=["100", "103"])
async def test_interim_1xx_responses_are_skipped(serve: Serve, pool: UpstreamPool, interim: bytes) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.send(interim)
        await conn.send(response(b"final answer"))
        await conn.wait_eof()

    server = await serve(handler)
    reply = await post(pool, server)
    try:
        assert (reply.status, await reply.read()) == (200, b"final answer")
    finally:
        reply.close()


async def test_unsolicited_answer_on_an_idle_connection_is_not_the_next_reply(
        serve: Serve, pool: UpstreamPool) -> None:
    send_408 = asyncio.Event()

    async def handler(conn: ServerConn) -> None:
        if conn.index == 0:
            await conn.read_request()
            await conn.send(response(b"first"))
            await send_408.wait()
            await conn.send(response(status=408, reason="Request Timeout", headers=[("Connection", "close")]))
            await conn.wait_eof()  # its close is still on the way
        else:
            await keepalive_handler(conn)

    server = await serve(handler)
    assert await post_read(pool, server, b"one") == b"first"
    (idle,) = pool._fast._idle[("127.0.0.1", server.port, False)]  # noqa: SLF001
    arrived = idle.waiter = asyncio.get_running_loop().create_future()  # woken when the 408's head is parsed
    send_408.set()
    await asyncio.wait_for(arrived, WAIT)
    idle.waiter = None
    reply = await post(pool, server, b"two")
    try:
        assert (reply.status, await reply.read()) == (200, b"conn 1 req 1: two")
    finally:
        reply.close()


# ---------------------------------------------------------------------------- 12. backpressure


async def test_large_body_pauses_reading_until_the_reader_catches_up(serve: Serve, pool: UpstreamPool) -> None:
    size, piece = 16 * 1024 * 1024, 64 * 1024
    data = random.Random(12).randbytes(size)
    all_sent = asyncio.Event()
    progress = [0]  # body bytes the server's socket has accepted

    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        sock = conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, piece)  # little kernel buffering on this side
        await conn.send(CHUNKED_HEAD)
        for i in range(0, size, piece):
            await conn.send(chunk(data[i:i + piece]))
            progress[0] = i + piece
        await conn.send(LAST_CHUNK)
        all_sent.set()
        await conn.wait_eof()

    server = await serve(handler)
    reply = await post(pool, server)
    try:
        conn = reply._conn  # noqa: SLF001
        while not (conn.paused or conn.complete or conn.error):  # nobody reads: each wake-up is a
            await conn.wait(WAIT)                                    # body piece joining the queue
        assert conn.paused, f"{conn.queued} bytes were read into memory without a pause"
        assert conn.transport is not None and not conn.transport.is_reading()
        buffered = conn.queued
        assert HIGH_WATER < buffered < 1024 * 1024
        # while the reader does not read, nothing more is taken off the socket and the server cannot
        # finish: give it a loose 0.3 s to prove otherwise (16 MiB over loopback takes a few ms)
        finished = asyncio.ensure_future(all_sent.wait())
        await asyncio.wait([finished], timeout=0.3)
        assert not all_sent.is_set(), "the server wrote all 16 MiB although nobody read"
        assert progress[0] < size // 2
        assert conn.paused and conn.queued == buffered
        body = await reply.read()
        await finished
        assert len(body) == size and hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        assert not conn.paused and conn.queued == 0
    finally:
        reply.close()


# ---------------------------------------------------------------------------- 13. read(limit)


async def test_read_limit(serve: Serve, pool: UpstreamPool) -> None:
    body = b"x" * 1000

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            if conn.index == 1:  # chunked: the limit is counted across chunks
                await conn.send(CHUNKED_HEAD + chunk(body[:600]) + chunk(body[600:]) + LAST_CHUNK)
            else:
                await conn.send(response(body))

    server = await serve(handler)
    reply = await post(pool, server)
    assert await reply.read(limit=1000) == body  # exactly the limit is fine
    reply.close()

    reply = await post(pool, server)
    with pytest.raises(UpstreamError) as info:
        await reply.read(limit=999)
    assert not info.value.retryable
    reply.close()  # a reply cut off by the limit does not go back to the pool
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)

    reply = await post(pool, server)
    assert server.requests[-1].conn == 1
    with pytest.raises(UpstreamError):
        await reply.read(limit=999)
    reply.close()
    await asyncio.wait_for(server.conns[1].eof.wait(), WAIT)


# ---------------------------------------------------------------------------- cancellation


async def test_cancelled_post_closes_its_connection(serve: Serve, pool: UpstreamPool) -> None:
    async def handler(conn: ServerConn) -> None:
        await conn.read_request()
        await conn.wait_eof()

    server = await serve(handler)
    task = asyncio.create_task(post(pool, server))
    await server.wait_requests(1)  # the request is at the server; the client waits for the headers
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)


# ---------------------------------------------------------------------------- 14. pool close


async def test_pool_close_closes_idle_connections(serve: Serve) -> None:
    release = asyncio.Event()

    async def handler(conn: ServerConn) -> None:
        while await conn.read_request() is not None:
            await release.wait()  # both requests are in flight at once: two connections
            await conn.send(response(b"ok"))

    server = await serve(handler)
    pool = Http1Pool()

    async def one() -> bytes:
        reply = await pool.post(server.target(), headers={}, body=b"{}", timeouts=T)
        try:
            return await reply.read()
        finally:
            reply.close()

    both = asyncio.gather(one(), one())
    await server.wait_requests(2)
    release.set()
    assert await both == [b"ok", b"ok"]
    assert len(server.conns) == 2 and not any(c.eof.is_set() for c in server.conns)
    await pool.close()
    await asyncio.wait_for(asyncio.gather(*(c.eof.wait() for c in server.conns)), WAIT)


async def test_reply_released_after_pool_close_is_closed_not_pooled(serve: Serve) -> None:
    server = await serve(keepalive_handler)
    pool = Http1Pool()
    reply = await pool.post(server.target(), headers={}, body=b"late", timeouts=T)
    await pool.close()
    assert await reply.read() == b"conn 0 req 1: late"
    reply.close()
    await asyncio.wait_for(server.conns[0].eof.wait(), WAIT)


# ---------------------------------------------------------------------------- names: resolved once, cached


async def test_a_host_name_is_resolved_once_and_reused_for_new_connections(serve: Serve, pool: UpstreamPool) -> None:
    async def close_after_answer(conn: ServerConn) -> None:  # every request needs a new connection
        if await conn.read_request() is not None:
            await conn.send(response(b"named", headers=[("Connection", "close")]))
            conn.close()

    server = await serve(close_after_answer)
    url = server.url(host="localhost")
    assert await post_read(pool, url) == b"named"
    cached = pool._fast._dns[("localhost", server.port)]  # noqa: SLF001
    assert await post_read(pool, url) == b"named"
    assert len(server.conns) == 2  # two connections ...
    assert pool._fast._dns[("localhost", server.port)] is cached  # noqa: SLF001 - ... one lookup


async def test_an_address_literal_is_not_looked_up(serve: Serve, pool: UpstreamPool) -> None:
    server = await serve(keepalive_handler)
    assert await post_read(pool, server) != b""
    assert pool._fast._dns == {}  # noqa: SLF001


async def test_a_name_that_does_not_resolve_is_one_clear_error(pool: UpstreamPool) -> None:
    with pytest.raises(UpstreamError) as info:
        await post(pool, "http://relaykit-test.invalid:9/v1/chat/completions")
    assert info.value.message == "The upstream host relaykit-test.invalid could not be resolved."


async def test_a_cached_name_whose_addresses_refuse_is_looked_up_again(pool: UpstreamPool) -> None:
    port = free_port()
    url = f"http://localhost:{port}/v1/chat/completions"
    with pytest.raises(UpstreamError):
        await post(pool, url)
    assert ("localhost", port) not in pool._fast._dns  # noqa: SLF001 - the next attempt asks the resolver again
