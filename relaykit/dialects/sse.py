"""Incremental Server-Sent Events framing, shared by every streaming dialect.

``SSEParser.feed`` takes raw bytes as they arrive and returns the complete events they
finish; partial lines wait for the next chunk.  Each event keeps its raw bytes so a
passthrough stream can forward it untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class SSEEvent:
    raw: bytes          # the event's bytes including its terminating blank line
    event: str | None   # the `event:` field, if any
    data: str           # the `data:` lines joined by "\n" ("" for comment-only events)


class SSEParser:
    """Split a byte stream into SSE events (lines end in \\n, \\r\\n or \\r)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk if self._buf else chunk
        if b"\r" in buf:
            # hold back a trailing \r: it may be the first half of \r\n
            tail = b""
            if buf.endswith(b"\r"):
                buf, tail = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            block = buf[start:end]
            start = end + 2
            ev = _parse_block(block)
            if ev is not None:
                events.append(ev)
        self._buf = buf[start:]
        return events

    def flush(self) -> list[SSEEvent]:
        """Return a final event left without its blank line (a truncated stream)."""
        block, self._buf = self._buf.rstrip(b"\r\n"), b""
        if not block:
            return []
        ev = _parse_block(block)
        return [ev] if ev is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    name: str | None = None
    data: list[str] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    if name is None and not data:
        return SSEEvent(block + b"\n\n", None, "")
    return SSEEvent(block + b"\n\n", name, "\n".join(data))


def encode_data(obj: object) -> bytes:
    """One `data:` event (OpenAI and Gemini framing)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def encode_event(name: str, obj: object) -> bytes:
    """One named event (Anthropic and Responses framing)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"
