"""An asyncio load generator for what wrk cannot do: streams (time to first byte and
total), and open-loop runs at a fixed arrival rate.  It speaks HTTP/1.1 over raw asyncio
streams with keep-alive, so its own cost per request stays small."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)   # seconds, whole response
    ttfb: list[float] = field(default_factory=list)        # seconds, first body byte
    errors: int = 0
    elapsed: float = 0.0

    @property
    def count(self) -> int:
        return len(self.latencies)


def request_bytes(url: str, body: bytes, key: str) -> tuple[str, int, bytes]:
    u = urlsplit(url)
    head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return u.hostname or "127.0.0.1", u.port or 80, head + body


async def _read_response(reader: asyncio.StreamReader, started: float, res: Result) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    first = None
    if b"transfer-encoding: chunked" in lower:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.strip(), 16)
            if first is None:
                first = time.perf_counter()
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            await reader.readexactly(size + 2)
    else:
        length = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        first = time.perf_counter()
    end = time.perf_counter()
    if status != 200:
        res.errors += 1
        return
    res.latencies.append(end - started)
    res.ttfb.append((first or end) - started)


async def closed_loop(url: str, body: bytes, key: str, *, concurrency: int, requests: int) -> Result:
    host, port, raw = request_bytes(url, body, key)
    res = Result()
    left = [requests]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while left[0] > 0:
                left[0] -= 1
                t0 = time.perf_counter()
                writer.write(raw)
                await _read_response(reader, t0, res)
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    res.elapsed = time.perf_counter() - t0
    return res


async def open_loop(url: str, body: bytes, key: str, *, rate: float, seconds: float, pool: int = 256) -> Result:
    """Send at a fixed arrival rate regardless of responses (latency from the scheduled
    send time, so queueing delay counts)."""
    host, port, raw = request_bytes(url, body, key)
    res = Result()
    conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(pool):
        conns.put_nowait(await asyncio.open_connection(host, port))

    async def one(scheduled: float) -> None:
        reader, writer = await conns.get()
        try:
            writer.write(raw)
            await _read_response(reader, scheduled, res)
        finally:
            conns.put_nowait((reader, writer))

    tasks = []
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(at)))
    await asyncio.gather(*tasks)
    res.elapsed = time.perf_counter() - start
    while not conns.empty():
        _, w = conns.get_nowait()
        w.close()
    return res


async def hold_streams(url: str, body: bytes, key: str, *, count: int, ready: asyncio.Event | None = None,
                       hold_for: float = 3.0) -> int:
    """Open ``count`` streaming requests, keep them open ``hold_for`` seconds, count how many got headers."""
    host, port, raw = request_bytes(url, body, key)
    opened = 0

    async def one() -> None:
        nonlocal opened
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        try:
            writer.write(raw)
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            opened += 1
            await asyncio.sleep(hold_for)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(count)))
    return opened
