"""A deliberately fast fake OpenAI upstream for the benchmark.

A raw asyncio protocol (uvloop when installed) with keep-alive that answers
``POST /v1/chat/completions`` with a canned completion, or a canned SSE stream of
``--chunks`` events (optionally ``--interval`` seconds apart: the "drip" used for the
memory test).  It parses only what it must (request line, headers, body length), so it
serves many times what relaykit can and the figures measure relaykit, not the fake.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import orjson

COMPLETION = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the benchmark upstream."},
                 "finish_reason": "stop", "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}})
JSON_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
             + str(len(COMPLETION)).encode() + b"\r\n\r\n")


def sse_events(n: int) -> list[bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000, "model": "bench"}
    out = [b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                           "finish_reason": None}]}) + b"\n\n"]
    for i in range(n):
        out.append(b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {"content": f" word{i}"},
                                                                   "finish_reason": None}]}) + b"\n\n")
    out.append(b"data: " + orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
               + b"\n\n")
    out.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": n,
                                                                          "total_tokens": 12 + n}}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Upstream(asyncio.Protocol):
    events: list[bytes] = []
    interval = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = self.buf[end + 4:total]
            self.buf = self.buf[total:]
            if b'"stream":true' in body.replace(b" ", b""):
                if self.interval:
                    asyncio.ensure_future(self.drip())
                else:
                    self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked"
                                 b"\r\n\r\n" + b"".join(chunked(e) for e in self.events) + b"0\r\n\r\n")
            else:
                self.t.write(JSON_HEAD + COMPLETION)

    async def drip(self) -> None:
        self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for e in self.events:
            if self.t.is_closing():
                return
            self.t.write(chunked(e))
            await asyncio.sleep(self.interval)
        if not self.t.is_closing():
            self.t.write(b"0\r\n\r\n")


async def serve(port: int, chunks: int, interval: float) -> None:
    Upstream.events = sse_events(chunks)
    Upstream.interval = interval
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", port, backlog=4096, reuse_address=True)
    sock = server.sockets[0]
    sys.stdout.write(f"upstream listening on http://127.0.0.1:{sock.getsockname()[1]}\n")
    sys.stdout.flush()
    await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--interval", type=float, default=0.0)
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    if os.environ.get("BENCH_CPU") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(os.environ["BENCH_CPU"])})
    asyncio.run(serve(args.port, args.chunks, args.interval))


if __name__ == "__main__":
    main()
