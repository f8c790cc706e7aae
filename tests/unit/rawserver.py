"""The raw asyncio HTTP/1.1 server that the tests of the lean upstream client
(relaykit/relay/http1.py: tests/unit/test_http1.py, tests/unit/test_http1_tls.py) drive,
plain or over TLS.

A ``RawServer`` listens on 127.0.0.1 (port 0), with an ``ssl.SSLContext`` or without, and
runs a test's handler on every accepted connection; the handler reads each request off a
``ServerConn`` and writes the reply bytes by hand (``response``, ``chunk``, ``CHUNKED_HEAD``,
``LAST_CHUNK``), so a test can send anything: a good reply, a broken one, or none.  The
server keeps every connection and request it saw for the test's assertions, and a handler
that fails fails the test when the server stops.  ``post`` and ``post_read`` send a request
through ``UpstreamPool.post`` the way the relay does.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from relaykit.domain import Timeouts
from relaykit.relay.http1 import FastReply
from relaykit.relay.upstream import UpstreamPool

# generous deadlines for tests that must not time out; small ones where a timeout is the point
T = Timeouts(connect=5.0, first_byte=5.0, idle=5.0)
WAIT = 5.0  # the longest a test waits for an event that must happen
JSON = {"Content-Type": "application/json"}  # the request headers ``post`` sends unless told


@dataclass
class Request:
    """One request as the server read it off the connection (decrypted, over TLS)."""

    head: bytes  # request line and headers, through the blank line
    body: bytes
    conn: int  # index of the server connection it arrived on


@dataclass
class ServerConn:
    """The server's side of one accepted connection (over TLS once the handshake is done)."""

    server: RawServer
    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    requests: list[Request] = field(default_factory=list)
    eof: asyncio.Event = field(default_factory=asyncio.Event)  # the client closed its side

    @property
    def tls_version(self) -> str | None:
        """The TLS version of the connection; None on plain TCP."""
        obj = self.writer.get_extra_info("ssl_object")
        return None if obj is None else obj.version()

    async def read_request(self) -> Request | None:
        """The next request, or None once the client has closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            partial = getattr(exc, "partial", b"")
            assert not partial, f"the client sent a partial request head: {partial!r}"
            self.eof.set()
            return None
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        req = Request(head, await self.reader.readexactly(length), self.index)
        self.requests.append(req)
        await self.server.arrived(req)
        return req

    async def wait_eof(self) -> None:
        """Hold the connection open until the client closes it (reading whatever it sends)."""
        try:
            await self.reader.read()
        except (ConnectionError, ssl.SSLError):
            pass
        self.eof.set()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        self.writer.close()


Handler = Callable[[ServerConn], Awaitable[None]]


class RawServer:
    """asyncio.start_server on 127.0.0.1 port 0, over TLS with ``ctx`` (plain TCP without);
    every accepted connection runs ``handler``.  Over TLS a connection is accepted, and
    counted, only once its handshake is complete.

    ``scheme`` is what ``url()`` names: https with a ``ctx``, http without, unless told
    otherwise (a plain TCP server that an https client is sent to, to see it fail)."""

    def __init__(self, handler: Handler, ctx: ssl.SSLContext | None = None, *, scheme: str | None = None) -> None:
        self.handler = handler
        self.ctx = ctx
        self.scheme = scheme or ("https" if ctx is not None else "http")
        self.conns: list[ServerConn] = []
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.sni: list[str | None] = []  # the server name of each ClientHello (over TLS)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._arrival = asyncio.Condition()
        if ctx is not None:
            ctx.sni_callback = lambda _obj, name, _ctx: self.sni.append(name)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0, ssl=self.ctx)
        self.port = self._server.sockets[0].getsockname()[1]

    async def arrived(self, req: Request) -> None:
        async with self._arrival:
            self.requests.append(req)
            self._arrival.notify_all()

    async def wait_requests(self, n: int) -> None:
        """Until ``n`` requests in all have reached the server (at most WAIT seconds)."""
        async with asyncio.timeout(WAIT), self._arrival:
            await self._arrival.wait_for(lambda: len(self.requests) >= n)

    def url(self, path: str = "/v1/chat/completions", *, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def target(self, path: str = "/v1/chat/completions") -> tuple[str, int, bool, str, str]:
        """What UpstreamPool passes to Http1Pool.post for ``url(path)``."""
        return ("127.0.0.1", self.port, self.scheme == "https", f"127.0.0.1:{self.port}", path)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        conn = ServerConn(self, len(self.conns), reader, writer)
        self.conns.append(conn)
        try:
            await self.handler(conn)
        except (ConnectionError, ssl.SSLError):
            pass  # the client went away; each test asserts on what it saw
        except asyncio.CancelledError:
            pass  # stop() ends the handlers still waiting; asyncio would log a cancelled task as an error
        except Exception as exc:  # a broken handler must fail the test, not vanish into a log
            self.errors.append(exc)
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        for conn in self.conns:  # a TLS close is a short exchange; let it finish on this loop
            try:
                async with asyncio.timeout(WAIT):
                    await conn.writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass
        if self.errors:
            raise self.errors[0]


@asynccontextmanager
async def serving(handler: Handler, ctx: ssl.SSLContext | None = None, *,
                  scheme: str | None = None) -> AsyncIterator[RawServer]:
    """A started ``RawServer`` (see there for ``ctx`` and ``scheme``), stopped on the way out."""
    server = RawServer(handler, ctx, scheme=scheme)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def upstream_pool() -> AsyncIterator[UpstreamPool]:
    """A fresh pool: its TLS context is made, from the environment, on its first https request."""
    pool = UpstreamPool()
    try:
        yield pool
    finally:
        await pool.close()


# ---------------------------------------------------------------------------- reply bytes


def response(body: bytes = b"", *, status: int = 200, reason: str = "OK",
             headers: Sequence[tuple[str, str]] = (), length: bool = True) -> bytes:
    """A response head (and body); with ``length`` a Content-Length header is added."""
    lines = [f"HTTP/1.1 {status} {reason}\r\n"]
    lines += [f"{k}: {v}\r\n" for k, v in headers]
    if length:
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def keepalive_handler(conn: ServerConn) -> None:
    """Answer every request on the connection with 'conn N req M: <body>'."""
    while (req := await conn.read_request()) is not None:
        await conn.send(response(f"conn {conn.index} req {len(conn.requests)}: ".encode() + req.body))


# ---------------------------------------------------------------------------- the client side


async def post(pool: UpstreamPool, to: RawServer | str, body: bytes = b"{}", *,
               headers: Mapping[str, str] | None = None, timeouts: Timeouts = T) -> FastReply:
    """POST ``body`` to ``to`` (a server's ``url()``, or a URL) through ``pool``, with the
    ``headers`` given (``JSON`` without); the reply must come from the lean client."""
    url = to if isinstance(to, str) else to.url()
    reply = await pool.post(url, headers=dict(headers or JSON), body=body, timeouts=timeouts)
    scheme = url.partition(":")[0]
    assert isinstance(reply, FastReply), f"an {scheme}:// URL with a bytes body takes the lean client"
    return reply


async def post_read(pool: UpstreamPool, to: RawServer | str, body: bytes = b"{}", *,
                    headers: Mapping[str, str] | None = None) -> bytes:
    """``post``, and the whole body of the reply."""
    reply = await post(pool, to, body, headers=headers)
    try:
        return await reply.read()
    finally:
        reply.close()
