"""A fake OpenAI upstream for embeddings, images, audio and realtime.

Rules (what tests can rely on):

* embeddings: ``fake_vector(text, dims)`` per input (token-id inputs: the ids joined by
  spaces); ``usage.prompt_tokens`` = words of the texts (token ids: their count).  The
  vectors come back as base64 when asked, unless ``ignore_base64`` (a server that only
  knows floats); ``no_usage`` drops usage.
* images: ``n`` items of ``b64_json`` "aW1hZ2U=" or ``url`` https://img.example/N.png;
  gpt-image models also report token usage (words of the prompt in, 1056 per image out)
  and the size / quality they resolved ``auto`` to (1024x1024 / medium).
* audio transcription / translation: uploads are read in chunks and hashed, never kept;
  the audio lasts ``size / 32000`` seconds; every response format is served.
  gpt-4o-* models report token usage instead of seconds.
* speech: 1000 bytes of audio per input character, in 8 chunks.
* realtime (WebSocket): GA event names; each ``response.create`` answers
  "Hello from fake-realtime! You said: <last user text>" word by word, then
  ``response.done`` with usage: input = words of every user text so far, output = words
  of the answer (``audio_tokens`` = ``audio_ratio`` × those when set).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from .base import Seen, SmallFake, json_of, words

TRANSCRIPT = "Hello from fake-openai audio."


def fake_vector(text: str, dims: int = 4) -> list[float]:
    base = (len(text) % 7) / 8
    return [round(base + i / 16, 4) for i in range(dims)]


def b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _stamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


class FakeOpenAIMedia(SmallFake):
    def __init__(self, key: str | None = None) -> None:
        self.ignore_base64 = False
        self.no_usage = False
        self.audio_tokens = 0
        self.sessions: list[dict[str, Any]] = []
        self.active_sockets = 0
        super().__init__(key)

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/embeddings", self.embeddings)
        r.add_post("/v1/images/generations", self.images)
        r.add_post("/v1/images/edits", self.image_edits)
        r.add_post("/v1/audio/transcriptions", self.transcribe)
        r.add_post("/v1/audio/translations", self.transcribe)
        r.add_post("/v1/audio/speech", self.speech)
        r.add_get("/v1/realtime", self.realtime)

    # ------------------------------------------------------------------ embeddings

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await json_of(request)
        self.record(request, body)
        raw = body["input"]
        items = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else raw
        texts = [x if isinstance(x, str) else " ".join(map(str, x)) for x in items]
        tokens = sum(words(x) if isinstance(x, str) else len(x) for x in items)
        dims = body.get("dimensions") or 4
        as_b64 = body.get("encoding_format") == "base64" and not self.ignore_base64
        out: dict[str, Any] = {"object": "list", "model": body["model"], "data": [
            {"object": "embedding", "index": i, "embedding": b64(fake_vector(t, dims)) if as_b64 else fake_vector(t, dims)}
            for i, t in enumerate(texts)]}
        if not self.no_usage:
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response(out)

    # ------------------------------------------------------------------ images

    def _image_reply(self, model: str, prompt: str, n: int, fmt: str | None, size: str, quality: str) -> dict[str, Any]:
        item = (lambda i: {"url": f"https://img.example/{i}.png"}) if fmt == "url" else (
            lambda i: {"b64_json": "aW1hZ2U=", "revised_prompt": prompt})
        out: dict[str, Any] = {"created": 1700000000, "data": [item(i) for i in range(n)]}
        if model.startswith("gpt-image"):
            out["usage"] = {"input_tokens": words(prompt), "output_tokens": 1056 * n,
                            "total_tokens": words(prompt) + 1056 * n,
                            "input_tokens_details": {"text_tokens": words(prompt), "image_tokens": 0}}
            out["size"] = "1024x1024" if size in ("", "auto") else size
            out["quality"] = "medium" if quality in ("", "auto") else quality
        return out

    async def images(self, request: web.Request) -> web.Response:
        body = await json_of(request)
        self.record(request, body)
        return web.json_response(self._image_reply(body["model"], body["prompt"], body.get("n", 1),
                                                   body.get("response_format"), body.get("size", ""),
                                                   body.get("quality", "")))

    async def _multipart(self, request: web.Request) -> Seen:
        seen = self.record(request)
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, BodyPartReader)
            if part.filename is None:
                seen.fields[part.name or ""] = (await part.read()).decode()
                continue
            digest, size = hashlib.sha256(), 0
            while chunk := await part.read_chunk(256 * 1024):
                digest.update(chunk)
                size += len(chunk)
            seen.files.append((part.name or "", part.filename, size, digest.hexdigest()))
        return seen

    async def image_edits(self, request: web.Request) -> web.Response:
        seen = await self._multipart(request)
        f = seen.fields
        return web.json_response(self._image_reply(f["model"], f["prompt"], int(f.get("n", "1")),
                                                   f.get("response_format"), f.get("size", ""), f.get("quality", "")))

    # ------------------------------------------------------------------ audio

    async def transcribe(self, request: web.Request) -> web.Response:
        seen = await self._multipart(request)
        size = sum(f[2] for f in seen.files)
        seconds = round(size / 32000, 3)
        fmt = seen.fields.get("response_format", "json")
        model = seen.fields.get("model", "")
        if fmt == "text":
            return web.Response(text=TRANSCRIPT + "\n", content_type="text/plain")
        if fmt == "srt":
            return web.Response(text=f"1\n{_stamp(0, ',')} --> {_stamp(seconds, ',')}\n{TRANSCRIPT}\n\n",
                                content_type="text/plain")
        if fmt == "vtt":
            return web.Response(text=f"WEBVTT\n\n{_stamp(0, '.')} --> {_stamp(seconds, '.')}\n{TRANSCRIPT}\n\n",
                                content_type="text/plain")
        if fmt == "verbose_json":
            return web.json_response({"task": "transcribe", "language": "english", "duration": seconds,
                                      "text": TRANSCRIPT, "segments": [
                                          {"id": 0, "seek": 0, "start": 0.0, "end": seconds, "text": TRANSCRIPT,
                                           "tokens": [1, 2], "temperature": 0.0, "avg_logprob": -0.1,
                                           "compression_ratio": 1.0, "no_speech_prob": 0.0}]})
        if model.startswith("gpt-4o"):
            usage: dict[str, Any] = {"type": "tokens", "input_tokens": 120, "output_tokens": words(TRANSCRIPT),
                                     "total_tokens": 120 + words(TRANSCRIPT),
                                     "input_token_details": {"audio_tokens": 120, "text_tokens": 0}}
        else:
            usage = {"type": "duration", "seconds": seconds}
        return web.json_response({"text": TRANSCRIPT, "usage": usage})

    async def speech(self, request: web.Request) -> web.StreamResponse:
        body = await json_of(request)
        self.record(request, body)
        fmt = body.get("response_format", "mp3")
        ctype = {"mp3": "audio/mpeg", "wav": "audio/wav", "pcm": "audio/pcm", "opus": "audio/ogg",
                 "aac": "audio/aac", "flac": "audio/flac"}[fmt]
        resp = web.StreamResponse(headers={"Content-Type": ctype})
        await resp.prepare(request)
        total = 1000 * len(body["input"])
        step = -(-total // 8)
        for start in range(0, total, step):
            await resp.write(bytes([start // step % 256]) * min(step, total - start))
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ realtime

    async def realtime(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session: dict[str, Any] = {"model": request.query.get("model"), "headers": dict(request.headers),
                                   "received": [], "closed_by": None}
        self.sessions.append(session)
        self.active_sockets += 1
        said: list[str] = []
        n = 0

        async def send(ev: dict[str, Any]) -> None:
            nonlocal n
            n += 1
            await ws.send_str(json.dumps({"event_id": f"event_{n}", **ev}))

        try:
            await send({"type": "session.created", "session": {"id": "sess_1", "object": "realtime.session",
                                                                "type": "realtime", "model": session["model"]}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    break
                ev = json.loads(msg.data)
                session["received"].append(ev.get("type"))
                if ev.get("type") == "session.update":
                    await send({"type": "session.updated", "session": {"id": "sess_1", "type": "realtime"}})
                elif ev.get("type") == "conversation.item.create":
                    item = ev.get("item", {})
                    text = " ".join(c.get("text", "") for c in item.get("content", []) if isinstance(c, dict))
                    said.append(text)
                    await send({"type": "conversation.item.added", "previous_item_id": None,
                                "item": {"id": f"item_{n}", "type": "message", "role": "user", "content": []}})
                elif ev.get("type") == "response.create":
                    await self._respond(send, said)
        finally:
            self.active_sockets -= 1
            session["closed_by"] = session["closed_by"] or "client"
        return ws

    async def _respond(self, send: Any, said: list[str]) -> None:
        answer = f"Hello from fake-realtime! You said: {said[-1] if said else ''}".strip()
        rid = f"resp_{len(said)}"
        await send({"type": "response.created", "response": {"id": rid, "object": "realtime.response",
                                                              "status": "in_progress", "output": []}})
        for i, w in enumerate(answer.split(" ")):
            await send({"type": "response.output_text.delta", "response_id": rid, "item_id": "item_a",
                        "output_index": 0, "content_index": 0, "delta": w if i == 0 else " " + w})
        await send({"type": "response.output_text.done", "response_id": rid, "item_id": "item_a",
                    "output_index": 0, "content_index": 0, "text": answer})
        inp, out = sum(words(s) for s in said), words(answer)
        await send({"type": "response.done", "response": {
            "id": rid, "object": "realtime.response", "status": "completed", "output": [],
            "usage": {"total_tokens": inp + out + self.audio_tokens, "input_tokens": inp,
                      "output_tokens": out + self.audio_tokens,
                      "input_token_details": {"cached_tokens": 0, "text_tokens": inp, "audio_tokens": 0},
                      "output_token_details": {"text_tokens": out, "audio_tokens": self.audio_tokens}}}})
