"""A tiny real request to a channel (``relaykit channel test``): one short prompt with a
one-token budget, non-streamed, in the channel's own dialect, timed."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from ..dialects.registry import dialect as dialect_module
from ..domain import Channel
from ..errors import RelayError
from .channels import kind_for
from .channels.base import UpstreamRequest
from .health import mask
from .upstream import UpstreamPool


@dataclass(frozen=True, slots=True)
class ProbeResult:
    channel: str
    model: str
    key: str        # masked
    status: int | None
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


async def probe(pool: UpstreamPool, channel: Channel, key: str) -> ProbeResult:
    kind = kind_for(channel.type)
    model = channel.models[0] if channel.models else ""
    if kind is None or not kind.dialects:  # rerank-only types (jina, cohere, xinference) have no chat to probe
        return ProbeResult(channel.name, model, mask(key), None, 0, f"channel type {channel.type} cannot be tested")
    dialect = kind.dialects[0]
    hub = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1, "stream": False}
    body = orjson.dumps(dialect_module(dialect).request_from_hub(hub, model=model))
    started = time.monotonic()
    try:
        reply = await kind.open(pool, channel, key, UpstreamRequest(dialect=dialect, model=model, body=body,
                                                                    stream=False))
        try:
            await reply.read(1024 * 1024)
        finally:
            reply.close()
    except RelayError as exc:
        return ProbeResult(channel.name, model, mask(key), None, int((time.monotonic() - started) * 1000), exc.message)
    ms = int((time.monotonic() - started) * 1000)
    return ProbeResult(channel.name, model, mask(key), reply.status, ms,
                       "" if reply.status < 400 else f"upstream answered {reply.status}")
