"""Non-chat operations on channels: embeddings, rerank, images, audio, realtime.

The chat registry (``REGISTRY``) says how a channel type speaks chat; ``OPS`` (beside it in
``channels/__init__``) says which of these one-shot operations the type serves and in which
upstream wire shape.  ``wire(op)`` is the capability flag (None: not served, the unary
pipeline skips the channel); ``open_op`` sends a body already built in that shape.  A body
may be a stream: multipart uploads are piped to the upstream, never held whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from ...domain import Channel, Timeouts
from ...errors import InvalidRequest, UpstreamError, UpstreamTimeout
from ..upstream import HttpReply, Reply, UpstreamPool
from .base import join_url

EMBEDDINGS = "embeddings"
RERANK = "rerank"
IMAGES = "images.generations"
IMAGE_EDITS = "images.edits"
TRANSCRIPTIONS = "audio.transcriptions"
TRANSLATIONS = "audio.translations"
SPEECH = "audio.speech"
REALTIME = "realtime"

# What people call each operation, for error messages.
TITLES = {EMBEDDINGS: "embeddings", RERANK: "rerank", IMAGES: "image generation", IMAGE_EDITS: "image edits",
          TRANSCRIPTIONS: "audio transcription", TRANSLATIONS: "audio translation", SPEECH: "speech",
          REALTIME: "realtime sessions"}

Body = bytes | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class OpRequest:
    op: str
    model: str                  # the upstream model name (some wires put it in the URL)
    body: Body
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)  # vendor headers from the client


class OpKind(Protocol):
    def wire(self, op: str) -> str | None: ...

    async def open_op(self, pool: UpstreamPool, channel: Channel, key: str, req: OpRequest) -> Reply: ...


class RealtimeKind(Protocol):
    def realtime_target(self, channel: Channel, key: str, model: str) -> tuple[str, dict[str, str]]: ...


async def send(pool: UpstreamPool, url: str, *, headers: Mapping[str, str], body: Body,
               timeouts: Timeouts) -> Reply:
    """POST a body that is either bytes (the pool's own path) or a stream.

    A streamed upload arrives at the client's pace, so the first-byte deadline starts when
    its last byte has been sent; the reply's idle deadline guards the way back.
    """
    if isinstance(body, bytes):
        return await pool.post(url, headers=headers, body=body, timeouts=timeouts)
    sess = pool.session(url)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect, sock_read=None)
    try:
        async with asyncio.timeout(None) as deadline:
            async def upload() -> AsyncIterator[bytes]:
                async for chunk in body:
                    yield chunk
                # the upload is done: from here the upstream has first_byte seconds to answer
                deadline.reschedule(asyncio.get_running_loop().time() + timeouts.first_byte)

            resp = await sess.post(url, data=upload(), headers=dict(headers), timeout=timeout,
                                   allow_redirects=False)
    except TimeoutError:
        raise UpstreamTimeout(f"The upstream did not answer within {timeouts.first_byte:g} seconds.") from None
    except aiohttp.ClientConnectorError:
        raise UpstreamError("The upstream could not be reached.") from None
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"The upstream request failed ({type(exc).__name__}).") from None
    return HttpReply(resp, timeouts.idle)


def bearer_headers(req: OpRequest, key: str) -> dict[str, str]:
    h = {"Content-Type": req.content_type}
    h.update(req.headers)
    if key:
        h["Authorization"] = f"Bearer {key}"
    return h


def ws_url(http_url: str) -> str:
    if http_url.startswith("https://"):
        return "wss://" + http_url[len("https://"):]
    if http_url.startswith("http://"):
        return "ws://" + http_url[len("http://"):]
    return http_url


class MediaOnly:
    """A channel type with no chat dialect (rerank providers).  It sits in the chat
    registry so the router plans it; a chat request routed to it is refused plainly."""

    dialects: tuple[str, ...] = ()
    label = "This channel"

    def dialect_for(self, channel: Channel, client_dialect: str) -> str:
        raise InvalidRequest(f"{self.label} channel '{channel.name}' does not serve chat; the model is "
                             "for rerank or embeddings only.", code="unsupported_operation")

    async def open(self, pool: UpstreamPool, channel: Channel, key: str, req: object) -> Reply:
        raise InvalidRequest(f"{self.label} channel '{channel.name}' does not serve chat.",
                             code="unsupported_operation")


async def post_path(pool: UpstreamPool, channel: Channel, path: str, key: str, req: OpRequest) -> Reply:
    """The Bearer-authenticated POST most rerank and embedding servers take."""
    return await send(pool, join_url(channel.base_url, path), headers=bearer_headers(req, key), body=req.body,
                timeouts=channel.timeouts)
