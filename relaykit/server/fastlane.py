"""The fast lane: relaykit's own HTTP/1.1 front for the hottest route, in front of aiohttp.

Where it sits: it is the protocol of the listening socket, so every connection starts
here.  A request the lane knows (``POST`` to ``/v1/chat/completions``, ``/v1/messages``
or ``/v1/responses`` with a plain Content-Length body) is parsed, authenticated and
relayed without aiohttp's request and response objects and middleware chain, which cost
80-110 us of the ~700 us a relayed request took at concurrency 1 (scripts/bench).
Anything else is *handed off*: another route or method, an encoded query string,
HTTP/1.0, a chunked, compressed or oversized body,
``Expect``, ``Upgrade``, a duplicate header, any byte the lane's strict parse does not
accept.  The hand-off gives the connection and every byte not yet consumed to the
aiohttp protocol, which owns the connection from then on.  So aiohttp stays the
reference for every unusual case (its error answers included), and the lane only serves
requests it parsed exactly; both sides agree on where each request ends because the lane
accepts only a single, well-formed Content-Length.

What the lane does itself mirrors the aiohttp route and its middleware one for one:
the same handler steps (the routes' shared ``*_call`` builders), errors in the route's dialect
(middleware.errors), the answer counted by route and the JSON access log
(ops_routes.observe), the request's task in the set `serve` drains on SIGTERM
(cli/serve.py), keep-alive with aiohttp's 75 s idle limit, chunked streams with
backpressure, and a client that goes away mid-stream stops the upstream and is billed
for what was delivered (render.send).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from aiohttp import web

from ..dialects import openai_chat
from ..errors import RelayError
from ..relay.auth import Caller, extract_key
from ..relay.pipeline import ChatCall, JsonReply, StreamReply
from .body import decode_json
from .cluster import CLUSTER
from .openai_routes import chat_call
from .ops_routes import log_access
from .render import error_parts
from .services import SERVICES, Services
from .vendor_routes import messages_call, responses_call

log = logging.getLogger("relaykit.server")

FIELD_LIMIT = 16 * 1024  # aiohttp's max_line_size / max_field_size (server/app.py): past them, its answer
HEAD_LIMIT = 2 * FIELD_LIMIT
KEEPALIVE_SECONDS = 75.0  # aiohttp's keepalive_timeout
SWEEP_SECONDS = 5.0
PIPELINED_LIMIT = 1024 * 1024  # bytes read ahead while a request is served before reading pauses
INTERNAL = "relaykit hit an internal error; the operator can find it in the log."

# control characters other than HTAB, CR and LF never appear in a header block the lane accepts
_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# a query the lane takes apart itself: plain names and values (Claude Code's ?beta=true);
# anything percent-encoded or otherwise unusual is aiohttp's to decode
_QUERY = re.compile(rb"[A-Za-z0-9_.~=&-]*")
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n" for s in HTTPStatus}


class _Request:
    __slots__ = ("headers", "query", "body", "keep_alive", "route")

    def __init__(self, headers: dict[str, str], query: dict[str, str], keep_alive: bool, route: _Route) -> None:
        self.headers = headers  # lower-cased names, as openai_routes.lower_headers gives them
        self.query = query
        self.body = b""
        self.keep_alive = keep_alive
        self.route = route


# the handler's checks and ChatCall, shared with the aiohttp route (openai_routes, vendor_routes)
Build = Callable[[Any, Caller, str, bytes, "dict[str, str]", "dict[str, str]"], ChatCall]


class _Route:
    __slots__ = ("method", "path", "dialect", "build")

    def __init__(self, path: str, dialect: str, build: Build) -> None:
        self.method, self.path, self.dialect, self.build = "POST", path, dialect, build


# by path; the request line must also be "POST <path>[?query] HTTP/1.1", or aiohttp serves it.
# Each route's dialect is the one its aiohttp handler is marked with (errors come back in it).
ROUTES: dict[bytes, _Route] = {
    b"/v1/chat/completions": _Route("/v1/chat/completions", openai_chat.NAME, chat_call),
    b"/v1/messages": _Route("/v1/messages", "anthropic", messages_call),  # Claude Code adds ?beta=true
    b"/v1/responses": _Route("/v1/responses", openai_chat.NAME, responses_call),
}
# what every lane route's request line starts with: a buffer that cannot become one goes early
_PREFIX = b"POST " + os.path.commonprefix(list(ROUTES))


async def _relay(lane: Lane, conn: Connection, req: _Request) -> int:
    """The aiohttp handlers of these routes, step for step: key, body, checks, pipeline, answer."""
    svc = lane.svc
    caller = await svc.auth.authenticate(extract_key(req.headers, req.query), conn.ip)
    body = decode_json(req.body)
    call = req.route.build(body, caller, conn.ip, req.body, req.headers, req.query)
    return await conn.send(await svc.pipeline.chat(call))


class Lane:
    """Per listening site: the connections, the hand-off target and the shared state."""

    def __init__(self, app: web.Application, handoff: Callable[[], asyncio.Protocol],
                 live: set[asyncio.Task[Any]] | None = None) -> None:
        self.app = app
        self.svc: Services = app[SERVICES]
        self.handoff = handoff  # aiohttp's web.Server: calling it makes the protocol for one connection
        self.live = live if live is not None else set()
        self.max_body = int(app._client_max_size)  # noqa: SLF001 - the limit the middleware enforces
        self.conns: set[Connection] = set()
        self.closing = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._date = ""
        self._date_at = 0

    def __call__(self) -> Connection:
        return Connection(self)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def date(self) -> str:
        now = int(time.time())
        if now != self._date_at:
            self._date, self._date_at = formatdate(now, usegmt=True), now
        return self._date

    def _sweep(self) -> None:
        """Close connections idle past the keep-alive limit (and headers that never finish)."""
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - KEEPALIVE_SECONDS
        for conn in [c for c in self.conns if not c.busy and c.last_active < cutoff]:
            conn.close()
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def pre_shutdown(self) -> None:
        """Stop keep-alive: idle connections close now, busy ones after their answer."""
        self.closing = True
        for conn in [c for c in self.conns if not c.busy]:
            conn.close()

    async def shutdown(self, timeout: float) -> None:
        """Let the requests in flight finish for up to ``timeout``, cancel the rest, close all."""
        self.pre_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        tasks = [c.task for c in self.conns if c.task is not None and not c.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        for conn in list(self.conns):
            conn.close()

    def observe(self, route: _Route, status: int, elapsed: float, conn: Connection, req: _Request,
                sent: int, request_id: str) -> None:
        """ops_routes.observe for a lane request: count it, and the access-log line."""
        c = self.app.get(CLUSTER)
        if c is None:
            return
        c.metrics.answered(route.path, route.method, status, elapsed)
        if c.settings.ops.access_log:
            log_access(route.method, route.path, route.path, status, elapsed, conn.ip, sent, request_id,
                       req.headers.get("user-agent", ""))


class Connection(asyncio.Protocol):
    """One client connection while the lane serves it (until it is handed to aiohttp)."""

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        # made by the loop that serves it; kept because each get_running_loop() is a getpid()
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.buf = bytearray()
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.last_active = 0.0
        self._closed = False
        self._read_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._started = False  # the answer's head is written: an error can no longer be answered
        self._sent = 0
        self._request_id = ""

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, (tuple, list)) and peer else ""
        self.last_active = self.loop.time()
        self.lane.conns.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._closed = True
        self.lane.conns.discard(self)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("The client closed the connection."))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_active = self.loop.time()
        if self.busy:  # pipelined: parsed once the answer in progress is written
            if len(self.buf) > PIPELINED_LIMIT and not self._read_paused and self.transport is not None:
                self.transport.pause_reading()
                self._read_paused = True
            return
        self._next()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- parsing ------------------------------------------------------------------------

    def _next(self) -> None:
        """Start the request at the head of the buffer, wait for more bytes, or hand off."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > HEAD_LIMIT or not _PREFIX.startswith(bytes(buf[:len(_PREFIX)])):
                self._handoff()  # too long, or not a request the lane knows: aiohttp answers
            return
        req, length = self._parse(bytes(buf[:end]))
        if req is None:
            self._handoff()
            return
        start = end + 4
        if len(buf) < start + length:
            return  # the body is on its way (the head is parsed again then: rare, cheap)
        req.body = bytes(buf[start:start + length])
        del buf[:start + length]
        self.busy = True
        self.task = self.loop.create_task(self._serve(req))

    def _parse(self, head: bytes) -> tuple[_Request | None, int]:
        if _CTL.search(head) is not None:
            return None, 0
        lines = head.split(b"\r\n")
        line = lines[0]
        if not line.startswith(b"POST ") or not line.endswith(b" HTTP/1.1"):
            return None, 0
        path, _, raw_query = line[5:-9].partition(b"?")
        route = ROUTES.get(path)
        if route is None or _QUERY.fullmatch(raw_query) is None:
            return None, 0
        query: dict[str, str] = {}
        for pair in raw_query.decode("ascii").split("&"):
            if pair:
                name, _, value = pair.partition("=")
                query[name] = value  # the last of a repeated name, as dict(request.query) keeps
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or len(line) > FIELD_LIMIT or b"\r" in line or b"\n" in line \
                    or _NAME.fullmatch(name) is None:
                return None, 0  # obs-fold, a space before the colon, stray CR/LF, an odd name
            key = name.decode("ascii").lower()
            if key in headers:
                return None, 0
            headers[key] = value.strip(b" \t").decode("utf-8", "surrogateescape")
        if ("transfer-encoding" in headers or "content-encoding" in headers or "expect" in headers
                or "upgrade" in headers):
            return None, 0
        cl = headers.get("content-length", "")
        if not cl.isascii() or not cl.isdigit() or len(cl) > 15:
            return None, 0
        length = int(cl)
        if length > self.lane.max_body:
            return None, 0  # aiohttp's middleware answers 413 in the dialect
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if "upgrade" in tokens:
            return None, 0
        return _Request(headers, query, "close" not in tokens, route), length

    def _handoff(self) -> None:
        """Give the connection, with the bytes not yet consumed, to aiohttp for good."""
        transport = self.transport
        self.lane.conns.discard(self)
        if transport is None or transport.is_closing():
            return
        proto = self.lane.handoff()
        if self._read_paused:
            transport.resume_reading()
            self._read_paused = False
        transport.set_protocol(proto)
        proto.connection_made(transport)
        data, self.buf = bytes(self.buf), bytearray()
        self.transport = None
        if data:
            proto.data_received(data)

    # -- serving ------------------------------------------------------------------------

    async def _serve(self, req: _Request) -> None:
        lane, route = self.lane, req.route
        task = self.task
        if task is not None:
            lane.live.add(task)
        started = time.perf_counter()
        status = 500
        self._started, self._sent, self._request_id = False, 0, ""
        keep = req.keep_alive
        try:
            try:
                status = await _relay(lane, self, req)
            except RelayError as err:
                status = self._answer_error(route.dialect, err)
            except asyncio.CancelledError:
                status = 499  # the client went away, or the drain cut it
                keep = False
                raise
            except Exception:
                log.exception("unhandled error on %s %s", route.method, route.path)
                status = self._answer_error(route.dialect, RelayError(INTERNAL))
                keep = keep and not self._started
        finally:
            if task is not None:
                lane.live.discard(task)
            lane.observe(route, status, time.perf_counter() - started, self, req, self._sent, self._request_id)
            self._finish(keep)

    def _finish(self, keep: bool) -> None:
        self.busy = False
        self.task = None
        self.last_active = self.loop.time()
        if not keep or self.lane.closing or self._closed:
            self.close()
            return
        if self._read_paused and self.transport is not None:
            self.transport.resume_reading()
            self._read_paused = False
        if self.buf:
            self._next()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # -- writing ------------------------------------------------------------------------

    def _head(self, status: int, headers: dict[str, str], framing: str) -> bytes:
        parts = [_STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n"]
        for k, v in headers.items():
            if "\n" in v or "\r" in v or "\n" in k or "\r" in k:
                raise ValueError(f"a CR or LF in the answer's header {k!r}")  # never split a response
            parts.append(f"{k}: {v}\r\n")
        parts.append(f"Date: {self.lane.date()}\r\n{framing}")
        if self.lane.closing:
            parts.append("Connection: close\r\n")
        parts.append("\r\n")
        self._request_id = headers.get("X-Request-Id", "")
        return "".join(parts).encode("utf-8")

    def _write(self, data: bytes) -> None:
        if self._closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        self.transport.write(data)

    async def _drain(self) -> None:
        if self._closed:
            raise ConnectionResetError("The client closed the connection.")
        if self._write_paused:
            self._drained = self.loop.create_future()
            await self._drained

    def _answer_error(self, dialect: str, err: RelayError) -> int:
        status, body, headers = error_parts(dialect, err)
        if self._started:
            return status  # mid-stream: the client sees the stream end early
        headers["Content-Type"] = "application/json"
        self._send_whole(status, headers, body)
        return status

    def _send_whole(self, status: int, headers: dict[str, str], body: bytes) -> None:
        head = self._head(status, headers, f"Content-Length: {len(body)}\r\n")
        self._started = True
        if self._closed or self.transport is None or self.transport.is_closing():
            return  # the client left meanwhile: as with aiohttp, the answer is dropped
        self.transport.write(head + body)
        self._sent = len(body)

    async def send(self, reply: JsonReply | StreamReply) -> int:
        """render.send for the lane: a whole answer, or a chunked stream with backpressure."""
        if isinstance(reply, JsonReply):
            self._send_whole(reply.status, reply.headers, reply.body)
            return reply.status
        chunks = reply.chunks
        try:
            head = self._head(200, reply.headers, "Transfer-Encoding: chunked\r\n")
            self._started = True
            self._write(head)
            async for chunk in chunks:
                if not chunk:
                    continue  # an empty chunk would end the stream
                self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                self._sent += len(chunk)
                if self._write_paused:
                    await self._drain()
            self._write(b"0\r\n\r\n")
        except ConnectionError:
            pass  # the client went away; closing the generator below stops the upstream and bills
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        return 200


class LaneSite(web.BaseSite):
    """An aiohttp site whose connections start in the lane (TCP host/port or a given socket)."""

    def __init__(self, runner: web.BaseRunner, *, host: str | None = None, port: int = 0,
                 sock: Any = None, backlog: int = 128, live: set[asyncio.Task[Any]] | None = None,
                 shutdown_timeout: float = 5.0) -> None:
        super().__init__(runner, backlog=backlog)
        assert runner.server is not None and isinstance(runner, web.AppRunner)
        self._host, self._port, self._sock = host, port, sock
        self._timeout = shutdown_timeout
        self.lane = Lane(runner.app, runner.server, live)

    @property
    def name(self) -> str:
        return f"http://{self._host or '0.0.0.0'}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(self.lane, sock=self._sock, backlog=self._backlog)
        else:
            self._server = await loop.create_server(self.lane, self._host, self._port, backlog=self._backlog,
                                                    reuse_address=True)
        self.lane.start()

    def stop_accepting(self) -> None:
        """Refuse new connections and end keep-alive; requests in flight go on."""
        if self._server is not None:
            self._server.close()
        self.lane.pre_shutdown()

    async def stop(self) -> None:
        self.stop_accepting()
        await self.lane.shutdown(self._timeout)
        await super().stop()
