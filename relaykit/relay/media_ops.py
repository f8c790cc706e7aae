"""The non-chat operations the unary pipeline runs: embeddings, rerank, images (generate
and edit), audio (transcribe, translate, speak).

Each one knows the price bases it can meter, the hold estimate (the largest cost the
request can reach), the upstream request for each wire, and how to read the reply into
the client's shape and the units it consumed.  Where an upstream reports usage it is
used; where it does not, usage is estimated from what was sent and the log row is
marked ``estimated`` (SPEC §5).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, Protocol

import orjson

from ..dialects import audio, embeddings, images, rerank
from ..dialects.rawjson import replace_top_level
from ..dialects.sse import SSEParser
from ..domain import Usage
from ..errors import RelayError, UpstreamError
from .channels import ops
from .channels.ops import OpRequest
from .meter import estimate_tokens
from .pricing import Units
from .unary import Answer, Streamed
from .upstream import Reply

TOKEN_OR_CALL = frozenset({"token", "call"})
HOLD_BYTES_PER_SECOND = 4_000      # holds assume audio as dense as 32 kbit/s (the most seconds per byte)
GUESS_BYTES_PER_SECOND = 16_000    # estimates assume 128 kbit/s when the audio's length is unknown
AUDIO_TOKENS_PER_SECOND = 25       # audio tokens per second of speech (estimates and holds)
SPOKEN_TOKENS_PER_SECOND = 4       # transcript tokens per second of speech
SPEECH_CHARS_PER_SECOND = 15       # estimate of speech length from its text
HOLD_SPEECH_CHARS_PER_SECOND = 10


class Uploaded(Protocol):
    """A client's multipart upload (server.multipart.Upload), piped to the upstream."""

    replayable: bool
    error: RelayError | None

    @property
    def content_type(self) -> str: ...

    @property
    def fields(self) -> dict[str, str]: ...

    def body(self, overrides: dict[str, str]) -> AsyncIterator[bytes]: ...

    def file_facts(self) -> tuple[bytes, int]: ...


async def _read_json(reply: Reply) -> tuple[bytes, Any]:
    try:
        raw = await reply.read()
    finally:
        reply.close()
    try:
        return raw, orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UpstreamError("The upstream answered with something that is not JSON.", retryable=False) from None


def _unreadable(what: str, exc: Exception) -> UpstreamError:
    return UpstreamError(f"The upstream's {what} could not be read: {exc}.", retryable=False)


def _renamed(raw: bytes, client_model: str, model: str) -> bytes:
    return raw if model == client_model else replace_top_level(raw, "model", model)


class _Plain:
    """Defaults for operations whose body is plain JSON bytes."""

    def prepare(self, failover: bool) -> None:
        return None

    def client_fault(self) -> RelayError | None:
        return None


# --------------------------------------------------------------------------- embeddings

class Embeddings(_Plain):
    op = ops.EMBEDDINGS
    bases = TOKEN_OR_CALL
    log_dialect = "embeddings"

    def __init__(self, req: embeddings.EmbedRequest, raw: bytes = b"") -> None:
        self.req, self.raw, self.model = req, raw, req.model
        self.tokens = sum(estimate_tokens(t) for t in req.texts) + req.token_ids

    def estimate(self) -> Units:
        return Units(usage=Usage(prompt_tokens=self.tokens))

    def request(self, wire: str, model: str) -> OpRequest:
        req = self.req
        if wire == "gemini":
            body = orjson.dumps(embeddings.gemini_body(req, model))
        elif req.gemini_action:
            body = orjson.dumps(embeddings.openai_body(req, model))
        else:  # an OpenAI client: its own bytes, model renamed
            body = _renamed(self.raw, req.model, model)
            if wire == "openai-compatible":  # many such servers know no base64: ask floats, encode here
                body = replace_top_level(body, "encoding_format", "float")
        return OpRequest(self.op, model, body)

    async def answer(self, reply: Reply, wire: str, model: str) -> Answer:
        req = self.req
        raw, body = await _read_json(reply)
        try:
            vectors = (embeddings.vectors_from_gemini(body) if wire == "gemini"
                       else embeddings.vectors_from_openai(body))
        except ValueError as exc:
            raise _unreadable("embeddings", exc) from None
        if len(vectors) != req.count:
            raise UpstreamError(f"The upstream returned {len(vectors)} embeddings for {req.count} inputs.",
                                retryable=False)
        reported = embeddings.prompt_tokens_of(body)
        tokens = self.tokens if reported is None else reported
        if req.gemini_action:
            out = (raw if wire == "gemini" and req.gemini_action == "batchEmbedContents"
                   else orjson.dumps(embeddings.gemini_response(req.gemini_action, vectors)))
        elif wire == "gemini":
            out = orjson.dumps(embeddings.openai_response(req.model, vectors, tokens, req.encoding))
        else:
            changed = embeddings.reencode_openai(body, req.encoding)
            if reported is None:
                body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
            out = orjson.dumps(body) if changed or reported is None else raw
        return Answer(out, "application/json", Units(usage=Usage(prompt_tokens=tokens, estimated=reported is None)))


# --------------------------------------------------------------------------- rerank

class Rerank(_Plain):
    op = ops.RERANK
    bases = TOKEN_OR_CALL

    def __init__(self, req: rerank.RerankRequest) -> None:
        self.req, self.model = req, req.model
        self.log_dialect = "rerank." + req.shape
        query = estimate_tokens(req.query)
        self.tokens = sum(query + estimate_tokens(t) for t in req.texts())
        self.response_id = uuid.uuid4().hex

    def estimate(self) -> Units:
        return Units(usage=Usage(prompt_tokens=self.tokens))

    def request(self, wire: str, model: str) -> OpRequest:
        return OpRequest(self.op, model, orjson.dumps(rerank.upstream_body(self.req, wire, model)))

    async def answer(self, reply: Reply, wire: str, model: str) -> Answer:
        _, body = await _read_json(reply)
        try:
            ranked = rerank.read_upstream(body, len(self.req.documents), self.req.top_n)
        except ValueError as exc:
            raise _unreadable("rerank results", exc) from None
        tokens = self.tokens if ranked.tokens is None else ranked.tokens
        out = rerank.render(self.req, ranked, response_id=self.response_id, tokens=tokens)
        return Answer(orjson.dumps(out), "application/json",
                      Units(usage=Usage(prompt_tokens=tokens, estimated=ranked.tokens is None)))


# --------------------------------------------------------------------------- images

class ImageGeneration(_Plain):
    op = ops.IMAGES
    bases = frozenset({"image", "token", "call"})
    log_dialect = "images.generations"

    def __init__(self, req: images.ImageRequest, raw: bytes = b"") -> None:
        self.req, self.raw, self.model = req, raw, req.model
        self.prompt_tokens = estimate_tokens(req.prompt)

    def estimate(self) -> Units:
        return Units(images=self.req.images(), usage=Usage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.req.n * images.MAX_IMAGE_TOKENS))

    def request(self, wire: str, model: str) -> OpRequest:
        return OpRequest(self.op, model, _renamed(self.raw, self.req.model, model))

    async def answer(self, reply: Reply, wire: str, model: str) -> Answer:
        raw, body = await _read_json(reply)
        try:
            made = images.images_in(body, self.req)
        except ValueError as exc:
            raise _unreadable("images", exc) from None
        tokens = images.token_usage(body)
        if tokens is not None:
            usage = Usage(prompt_tokens=tokens[0], completion_tokens=tokens[1])
        else:
            usage = Usage(prompt_tokens=self.prompt_tokens, completion_tokens=len(made) * images.MAX_IMAGE_TOKENS,
                          estimated=True)
        return Answer(raw, "application/json", Units(usage=usage, images=made))


class ImageEdit(ImageGeneration):
    op = ops.IMAGE_EDITS
    log_dialect = "images.edits"

    def __init__(self, req: images.ImageRequest, upload: Uploaded) -> None:
        super().__init__(req)
        self.upload = upload

    def prepare(self, failover: bool) -> None:
        self.upload.replayable = failover

    def client_fault(self) -> RelayError | None:
        return self.upload.error

    def request(self, wire: str, model: str) -> OpRequest:
        return OpRequest(self.op, model, self.upload.body({"model": model}), self.upload.content_type)


# --------------------------------------------------------------------------- audio

class Transcription:
    bases = frozenset({"second", "token", "call"})

    def __init__(self, op: str, model: str, upload: Uploaded, *, declared_bytes: int) -> None:
        self.op, self.model, self.upload = op, model, upload
        self.log_dialect = op
        self.declared_bytes = declared_bytes  # the body's Content-Length, or the size limit

    def prepare(self, failover: bool) -> None:
        self.upload.replayable = failover

    def client_fault(self) -> RelayError | None:
        return self.upload.error

    def estimate(self) -> Units:
        seconds = Decimal(self.declared_bytes) / HOLD_BYTES_PER_SECOND
        return Units(seconds=seconds, usage=_spoken_usage(seconds))

    def request(self, wire: str, model: str) -> OpRequest:
        return OpRequest(self.op, model, self.upload.body({"model": model}), self.upload.content_type)

    async def answer(self, reply: Reply, wire: str, model: str) -> Answer:
        try:
            raw = await reply.read()
        finally:
            reply.close()
        fmt = self.upload.fields.get("response_format") or "json"
        heard = audio.heard(raw, fmt)
        seconds, estimated = heard.seconds, False
        if seconds is None:
            head, size = self.upload.file_facts()
            seconds = audio.wav_seconds(head, size)
            if seconds is None:
                seconds, estimated = Decimal(size) / GUESS_BYTES_PER_SECOND, True
        if heard.input_tokens is not None:
            usage = Usage(prompt_tokens=heard.input_tokens, completion_tokens=heard.output_tokens or 0,
                          audio_prompt_tokens=heard.audio_tokens)
        else:
            usage = _spoken_usage(seconds, estimated=True)
        ctype = reply.headers.get("Content-Type") or ("application/json" if fmt.endswith("json") else "text/plain")
        return Answer(raw, ctype, Units(usage=usage, seconds=seconds, seconds_estimated=estimated))


def _spoken_usage(seconds: Decimal, *, estimated: bool = False) -> Usage:
    audio_tokens = int(seconds * AUDIO_TOKENS_PER_SECOND) + 1
    return Usage(prompt_tokens=audio_tokens, completion_tokens=int(seconds * SPOKEN_TOKENS_PER_SECOND) + 1,
                 audio_prompt_tokens=audio_tokens, estimated=estimated)


class Speech(_Plain):
    op = ops.SPEECH
    bases = frozenset({"char", "second", "token", "call"})
    log_dialect = "audio.speech"

    def __init__(self, req: audio.SpeechRequest, raw: bytes) -> None:
        self.req, self.raw, self.model = req, raw, req.model
        self.head = b""
        self.size = 0
        self.reported: Usage | None = None

    def estimate(self) -> Units:
        chars = len(self.req.text)
        seconds = Decimal(chars) / HOLD_SPEECH_CHARS_PER_SECOND
        out = int(seconds * AUDIO_TOKENS_PER_SECOND) + 1
        return Units(chars=chars, seconds=seconds, usage=Usage(
            prompt_tokens=estimate_tokens(self.req.text), completion_tokens=out, audio_completion_tokens=out))

    def request(self, wire: str, model: str) -> OpRequest:
        return OpRequest(self.op, model, _renamed(self.raw, self.req.model, model))

    async def answer(self, reply: Reply, wire: str, model: str) -> Streamed:
        ctype = reply.headers.get("Content-Type") or self.req.content_type
        return Streamed(self._chunks(reply), ctype, self.units)

    async def _chunks(self, reply: Reply) -> AsyncIterator[bytes]:
        parser = SSEParser() if self.req.sse else None
        async for chunk in reply.chunks():
            if len(self.head) < 4096:
                self.head += chunk[:4096 - len(self.head)]
            self.size += len(chunk)
            if parser is not None:
                for ev in parser.feed(chunk):
                    self._meter_event(ev.data)
            yield chunk

    def _meter_event(self, data: str) -> None:
        if "speech.audio.done" not in data:
            return
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        usage = ev.get("usage") if isinstance(ev, dict) else None
        if not isinstance(usage, dict):
            return
        inp, out = usage.get("input_tokens"), usage.get("output_tokens")
        if isinstance(inp, int):
            out = out if isinstance(out, int) else 0
            self.reported = Usage(prompt_tokens=inp, completion_tokens=out, audio_completion_tokens=out)

    def units(self) -> Units:
        chars = len(self.req.text)
        seconds = None if self.req.sse else audio.speech_seconds(self.req.response_format, self.head, self.size)
        estimated = seconds is None
        if seconds is None:
            seconds = Decimal(chars) / SPEECH_CHARS_PER_SECOND
        usage = self.reported
        if usage is None:
            out = int(seconds * AUDIO_TOKENS_PER_SECOND) + 1
            usage = Usage(prompt_tokens=estimate_tokens(self.req.text), completion_tokens=out,
                          audio_completion_tokens=out, estimated=True)
        return Units(usage=usage, chars=chars, seconds=seconds, seconds_estimated=estimated)
