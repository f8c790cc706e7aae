"""The built-in ``mock`` channel's non-chat operations, so the example configuration can
try every endpoint offline: deterministic embeddings (a hash of the text), rerank by word
overlap, a one-pixel image, a fixed transcript whose length follows the upload's size,
and silent speech as long as the text would take to say.  Replies are in the OpenAI
(and, for rerank, Jina) shapes and go through the same code as a real upstream's.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
import time
from collections.abc import AsyncIterable
from typing import Any

import orjson

from ...domain import Channel
from ..meter import estimate_tokens
from ..upstream import BytesReply, UpstreamPool
from . import ops

PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
TRANSCRIPT = "This is the relaykit mock transcription."
BYTES_PER_SECOND = 16_000
SPEECH_RATE = 24_000  # samples per second, 16-bit mono, like OpenAI's pcm
_FIELD = re.compile(rb'name="([^"]+)"\r\n\r\n([^\r]*)\r\n')


def vector(text: str, dims: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    raw = [(seed[i % 32] - 127.5) / 127.5 for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


def wav(seconds: float) -> bytes:
    data = b"\x00\x00" * int(seconds * SPEECH_RATE)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, SPEECH_RATE, SPEECH_RATE * 2, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


async def _drain(body: ops.Body) -> tuple[bytes, int]:
    """The first 64 KiB (the text fields) and the size of a body, without keeping it."""
    if isinstance(body, bytes):
        return body[:65536], len(body)
    head, size = b"", 0
    async for chunk in body if isinstance(body, AsyncIterable) else ():
        if len(head) < 65536:
            head += chunk[:65536 - len(head)]
        size += len(chunk)
    return head, size


def _json(obj: Any) -> BytesReply:
    return BytesReply(200, orjson.dumps(obj), headers={"Content-Type": "application/json"})


class MockOps:
    def wire(self, op: str) -> str | None:
        if op == ops.RERANK:
            return "jina"
        return "openai" if op in ops.TITLES and op != ops.REALTIME else None

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: ops.OpRequest) -> BytesReply:
        head, size = await _drain(req.body)
        multipart = req.content_type.startswith("multipart/")
        fields = {k.decode(): v.decode("utf-8", "replace") for k, v in _FIELD.findall(head)} if multipart else {}
        if req.op in (ops.TRANSCRIPTIONS, ops.TRANSLATIONS):
            seconds = round(size / BYTES_PER_SECOND, 2)
            fmt = fields.get("response_format", "json")
            if fmt in ("text", "srt", "vtt"):
                return BytesReply(200, TRANSCRIPT.encode(), headers={"Content-Type": "text/plain"})
            return _json({"text": TRANSCRIPT, "usage": {"type": "duration", "seconds": seconds}})
        body: dict[str, Any] = fields if multipart else orjson.loads(head)
        if req.op == ops.EMBEDDINGS:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            dims = body.get("dimensions") or 8
            vecs = [vector(str(x), dims) for x in inputs]
            b64 = body.get("encoding_format") == "base64"
            tokens = sum(estimate_tokens(x) if isinstance(x, str) else len(x) if isinstance(x, list) else 1
                         for x in inputs)
            return _json({"object": "list", "model": req.model, "usage": {"prompt_tokens": tokens,
                                                                          "total_tokens": tokens},
                          "data": [{"object": "embedding", "index": i,
                                    "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64
                                    else v} for i, v in enumerate(vecs)]})
        if req.op == ops.RERANK:
            query = set(body["query"].lower().split())
            docs = [d if isinstance(d, str) else str(d.get("text", "")) for d in body["documents"]]
            scores = [len(query & set(d.lower().split())) / (len(query) or 1) for d in docs]
            order = sorted(range(len(docs)), key=lambda i: -scores[i])[:body.get("top_n") or len(docs)]
            tokens = sum(estimate_tokens(body["query"]) + estimate_tokens(d) for d in docs)
            return _json({"model": req.model, "usage": {"total_tokens": tokens},
                          "results": [{"index": i, "relevance_score": scores[i]} for i in order]})
        if req.op in (ops.IMAGES, ops.IMAGE_EDITS):
            n = int(body.get("n", 1)) if req.op == ops.IMAGES else 1
            item = ({"url": "data:image/png;base64," + base64.b64encode(PIXEL_PNG).decode()}
                    if body.get("response_format") == "url" else {"b64_json": base64.b64encode(PIXEL_PNG).decode()})
            return _json({"created": int(time.time()), "data": [item] * n})
        seconds = len(body.get("input", "")) / 15
        audio = wav(seconds)
        if body.get("response_format") == "pcm":
            return BytesReply(200, audio[44:], headers={"Content-Type": "audio/pcm"})
        return BytesReply(200, audio, headers={"Content-Type": "audio/wav"})
