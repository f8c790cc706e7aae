"""The built-in ``mock`` channel: a local OpenAI-chat provider that needs no key.

Answers are deterministic (they echo the last user message), token counts are honest
(the relay's own estimator applied to the prompt and the answer, so the log and the bill
agree with what was sent and shown), ``max_tokens`` truncates with ``finish_reason:
length``, and streams arrive word by word with usage only when asked, exactly as an
OpenAI upstream behaves.  The reply passes through the same code as a real upstream's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ...dialects import openai_chat
from ...domain import Channel
from ..meter import estimate_tokens
from ..upstream import BytesReply, UpstreamPool
from .base import UpstreamRequest


def _last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def answer_words(body: dict[str, Any]) -> tuple[list[str], str]:
    said = " ".join(_last_user_text(body.get("messages") or []).split())[:400]
    text = f"This is the relaykit mock model. You said: {said}" if said else "This is the relaykit mock model."
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    limit = openai_chat.max_output_tokens(body)
    if limit is None:
        return pieces, "stop"
    kept: list[str] = []
    used = 0
    for p in pieces:
        cost = estimate_tokens(p)
        if used + cost > limit:
            return kept, "length"
        kept.append(p)
        used += cost
    return kept, "stop"


def usage(body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt, _ = openai_chat.prompt_text(body)
    p = estimate_tokens(prompt)
    c = estimate_tokens(text)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0}}


class MockChannel:
    dialects = ("openai_chat",)

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        return "openai_chat"

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, upstream: UpstreamRequest) -> BytesReply:
        stream = upstream.stream
        req = orjson.loads(upstream.body)
        pieces, finish = answer_words(req)
        text = "".join(pieces)
        model = req.get("model", "mock")
        rid = "chatcmpl-mock" + uuid.uuid4().hex[:20]
        created = int(time.time())
        if not stream:
            resp = {"id": rid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                                 "finish_reason": finish, "logprobs": None}],
                    "usage": usage(req, text), "system_fingerprint": "fp_relaykit_mock"}
            return BytesReply(200, orjson.dumps(resp), headers={"Content-Type": "application/json"})
        return BytesReply(200, stream=self._stream(req, rid, created, model, pieces, finish),
                          headers={"Content-Type": "text/event-stream"})

    async def _stream(self, req: dict[str, Any], rid: str, created: int, model: str, pieces: list[str],
                      finish: str) -> AsyncIterator[bytes]:
        with_usage = openai_chat.wants_usage(req)
        base: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model}
        extra = {"usage": None} if with_usage else {}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return b"data: " + orjson.dumps({**base, "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason}], **extra}) + b"\n\n"

        yield chunk({"role": "assistant", "content": ""})
        for p in pieces:
            yield chunk({"content": p})
        yield chunk({}, finish)
        if with_usage:
            yield b"data: " + orjson.dumps({**base, "choices": [], "usage": usage(req, "".join(pieces))}) + b"\n\n"
        yield b"data: [DONE]\n\n"
