"""A client's multipart upload, piped to the upstream without being held in memory.

Text fields (model, prompt, response_format, ...) are small and read into memory; file
parts stream: each chunk read from the client is written to the upstream as it arrives.
Routing needs the model before anything is forwarded, so the parts are read up to the
first file part once the model is known (a client that sends its file before the model
has that file spooled to a temporary file on disk, never to memory).

For failover the upload must be replayable: when more than one attempt is possible the
file bytes are also teed to a temporary file, and a later attempt replays what an
abandoned one consumed, then continues with the live stream.  Each attempt re-encodes
the fields, so every channel gets its own model name.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..errors import InvalidRequest, PayloadTooLarge, RelayError, UpstreamError

CHUNK = 64 * 1024
MAX_FIELD_BYTES = 1024 * 1024
HEAD_BYTES = 4096


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None
    value: bytes = b""                 # a text field's value
    size: int = 0                      # a file's bytes read so far
    head: bytes = b""                  # a file's first bytes (format sniffing)
    complete: bool = False
    spool: IO[bytes] | None = field(default=None, repr=False)

    @property
    def is_file(self) -> bool:
        return self.filename is not None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


class Upload:
    def __init__(self, reader: MultipartReader, *, max_bytes: int) -> None:
        self._reader = reader
        self._live: BodyPartReader | None = None  # the file part being read from the client
        self._done = False
        self.max_bytes = max_bytes
        self.total = 0
        self.parts: list[Part] = []
        self.replayable = False
        self.error: RelayError | None = None  # what went wrong reading the client while piping it
        self.boundary = "relaykit-" + uuid.uuid4().hex

    @classmethod
    async def open(cls, request: web.Request, *, max_bytes: int) -> Upload:
        ctype = request.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise InvalidRequest("This endpoint takes multipart/form-data (a file and its fields).")
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            raise InvalidRequest("The multipart body could not be read (is the boundary missing?).") from None
        return cls(reader, max_bytes=max_bytes)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def fields(self) -> dict[str, str]:
        return {p.name: p.value.decode("utf-8", "replace") for p in self.parts if not p.is_file}

    def files(self) -> list[Part]:
        return [p for p in self.parts if p.is_file]

    # ------------------------------------------------------------------ reading the client

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self.max_bytes:
            raise PayloadTooLarge(f"The upload is larger than the relay accepts "
                                  f"({self.max_bytes // (1024 * 1024)} MB).")

    async def _next_part(self) -> Part | None:
        """Read the next part's headers (and a text part's value); None at the end."""
        if self._done:
            return None
        if self._live is not None:
            raise UpstreamError("The upload was interrupted mid-file and cannot be sent again.", retryable=False)
        try:
            got = await self._reader.next()
        except ValueError:
            raise InvalidRequest("The multipart body is malformed.") from None
        if got is None:
            self._done = True
            return None
        if not isinstance(got, BodyPartReader):
            raise InvalidRequest("Nested multipart bodies are not accepted.")
        part = Part(got.name or "", got.filename, got.headers.get("Content-Type"))
        self.parts.append(part)
        if part.is_file:
            self._live = got
            return part
        value = bytearray()
        while chunk := await got.read_chunk(CHUNK):
            value += chunk
            self._count(len(chunk))
            if len(value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"The field '{part.name}' is too long.")
        part.value, part.complete = bytes(value), True
        return part

    async def _read_live(self, part: Part, spool: bool) -> AsyncIterator[bytes]:
        live = self._live
        assert live is not None
        if spool and part.spool is None:
            part.spool = tempfile.TemporaryFile()
        while chunk := await live.read_chunk(CHUNK):
            self._count(len(chunk))
            if len(part.head) < HEAD_BYTES:
                part.head += chunk[:HEAD_BYTES - len(part.head)]
            part.size += len(chunk)
            if part.spool is not None:
                part.spool.seek(0, 2)
                part.spool.write(chunk)
            yield chunk
        part.complete = True
        self._live = None

    async def read_fields(self, wanted: str = "model") -> dict[str, str]:
        """Read parts until ``wanted`` is known and a file part starts (or the body ends).
        Files that come before ``wanted`` are spooled to disk on the way."""
        while True:
            known = wanted in self.fields
            if self._live is not None:
                if known:
                    return self.fields
                async for _ in self._read_live(self.parts[-1], spool=True):
                    pass
            part = await self._next_part()
            if part is None:
                return self.fields

    # ------------------------------------------------------------------ writing the upstream

    def _header(self, part: Part) -> bytes:
        disp = f'form-data; name="{_quote(part.name)}"'
        if part.filename is not None:
            disp += f'; filename="{_quote(part.filename)}"'
        lines = [f"--{self.boundary}", f"Content-Disposition: {disp}"]
        if part.is_file:
            lines.append(f"Content-Type: {part.content_type or 'application/octet-stream'}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _file_bytes(self, part: Part) -> AsyncIterator[bytes]:
        if part.spool is not None:
            part.spool.seek(0)
            replayed = 0
            while replayed < part.size:
                chunk = part.spool.read(min(CHUNK, part.size - replayed))
                if not chunk:
                    break
                replayed += len(chunk)
                yield chunk
        elif part.size:
            raise UpstreamError("The upload was interrupted mid-file and cannot be sent again.", retryable=False)
        if not part.complete:
            async for chunk in self._read_live(part, spool=self.replayable):
                yield chunk

    def file_facts(self) -> tuple[bytes, int]:
        """The first bytes and the size of the (first) file, for metering its audio."""
        files = self.files()
        return (files[0].head, files[0].size) if files else (b"", 0)

    async def body(self, overrides: dict[str, str]) -> AsyncIterator[bytes]:
        """The upload re-encoded for one attempt, text fields in ``overrides`` replaced.
        A client-side failure is kept in ``error``: the HTTP client reports it only as a
        broken upstream connection."""
        try:
            async for chunk in self._encode(overrides):
                yield chunk
        except RelayError as exc:
            self.error = exc
            raise
        except (ConnectionError, asyncio.TimeoutError, HttpProcessingError):
            self.error = InvalidRequest("The upload stopped before its end.")
            raise

    async def _encode(self, overrides: dict[str, str]) -> AsyncIterator[bytes]:
        i = 0
        while True:
            if i == len(self.parts) and await self._next_part() is None:
                break
            part = self.parts[i]
            yield self._header(part)
            if part.is_file:
                async for chunk in self._file_bytes(part):
                    yield chunk
            else:
                yield overrides[part.name].encode() if part.name in overrides else part.value
            yield b"\r\n"
            i += 1
        yield f"--{self.boundary}--\r\n".encode()

    def close(self) -> None:
        for p in self.parts:
            if p.spool is not None:
                p.spool.close()
                p.spool = None
