"""Talking to upstreams: the reply object the pipeline reads (status, headers, body or
chunks), the lean keep-alive client (relay/http1.py) for every request whose body is
bytes, and one pooled aiohttp session per origin for the rest (multipart uploads,
WebSockets, task polling).

Timeouts follow RELIABILITY §3.1: a connect deadline, a first-byte deadline for the
response headers, and an idle deadline between body chunks (per read, not ``sock_read``); there is no
total deadline, so long healthy streams live.  Redirects are never followed: the
upstream host comes only from the operator's config.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from ..domain import Timeouts
from ..errors import UpstreamError, UpstreamTimeout
from .http1 import MAX_BODY_BYTES, FastReply, Http1Pool, read_all


class Reply(Protocol):
    status: int
    headers: Mapping[str, str]

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes: ...

    def close(self) -> None: ...


class HttpReply:
    __slots__ = ("_resp", "status", "headers", "_idle")

    def __init__(self, resp: aiohttp.ClientResponse, idle: float) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers
        self._idle = idle

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        while True:
            # the idle deadline is ours, per read: aiohttp's sock_read would also cut the
            # wait for the response headers, which the (longer) first-byte deadline governs
            try:
                async with asyncio.timeout(self._idle):
                    chunk = await content.readany()
            except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
                raise UpstreamTimeout(f"The upstream sent nothing for {self._idle:g} seconds.") from None
            except (aiohttp.ClientError, OSError):
                raise UpstreamError("The upstream connection broke mid-response.", retryable=False) from None
            if not chunk:
                return
            yield chunk

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        return await read_all(self.chunks(), limit)

    def close(self) -> None:
        self._resp.close()


class UpstreamPool:
    """The lean client for POSTs of bytes, and one aiohttp ClientSession per upstream
    origin (created on first use) for everything else; all closed on shutdown."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._fast = Http1Pool()
        self._targets: dict[str, tuple[str, int, bool, str, str]] = {}

    def session(self, url: str) -> aiohttp.ClientSession:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        sess = self._sessions.get(origin)
        if sess is None or sess.closed:
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300)
            sess = aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                         skip_auto_headers=("User-Agent",), trust_env=False)
            self._sessions[origin] = sess
        return sess

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.close()
        await self._fast.close()

    def _target(self, url: str) -> tuple[str, int, bool, str, str] | None:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return None
            tls = parts.scheme == "https"
            port = parts.port or (443 if tls else 80)
            host = parts.hostname
            host_header = host if ":" not in host else f"[{host}]"
            if parts.port is not None:
                host_header += f":{parts.port}"
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = (host, port, tls, host_header, path)
            if len(self._targets) > 4096:  # URLs come from the config, but a query may vary
                self._targets.clear()
            self._targets[url] = target
        return target

    async def post(self, url: str, *, headers: Mapping[str, str], body: bytes,
                   timeouts: Timeouts) -> HttpReply | FastReply:
        target = self._target(url)
        if target is not None:
            return await self._fast.post(target, headers=headers, body=body, timeouts=timeouts)
        sess = self.session(url)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=None)
        try:
            resp = await asyncio.wait_for(
                sess.post(url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False),
                timeout=timeouts.connect + timeouts.first_byte)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"The upstream did not answer within {timeouts.first_byte:g} seconds.") from None
        except aiohttp.ClientConnectorError:
            raise UpstreamError("The upstream could not be reached.") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"The upstream request failed ({type(exc).__name__}).") from None
        return HttpReply(resp, timeouts.idle)


class BytesReply:
    """A reply produced in-process (the mock channel), shaped like an HTTP one."""

    def __init__(self, status: int, body: bytes | None = None, stream: AsyncIterator[bytes] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.headers: Mapping[str, str] = dict(headers or {})
        self._body = body
        self._stream = stream

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._stream is not None:
            async for c in self._stream:
                yield c
        elif self._body is not None:
            yield self._body

    async def read(self, limit: int = MAX_BODY_BYTES) -> bytes:
        return b"".join([c async for c in self.chunks()])

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and hasattr(stream, "aclose"):
            agen: Any = stream
            asyncio.ensure_future(agen.aclose())
