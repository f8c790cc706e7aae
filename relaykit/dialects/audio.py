"""Audio: ``/v1/audio/transcriptions``, ``/v1/audio/translations`` (multipart) and
``/v1/audio/speech`` (JSON in, audio bytes out), PROTOCOLS §6.4.  Pure: validation, and
the metering facts (seconds of audio, characters, tokens) read from what passes by.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

NAME = "audio"
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
SPEECH_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
                "wav": "audio/wav", "pcm": "audio/pcm"}
PCM_BYTES_PER_SECOND = 48_000   # OpenAI's pcm: 24 kHz, 16-bit, mono
MAX_SPEECH_CHARS = 4096
_CUE_END = re.compile(rb"--> *(\d+):(\d{2}):(\d{2})[,.](\d{3})")


@dataclass(frozen=True, slots=True)
class Heard:
    """What a transcription response says about the audio it transcribed."""

    seconds: Decimal | None = None
    input_tokens: int | None = None     # token-metered models (gpt-4o-transcribe)
    output_tokens: int | None = None
    audio_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    model: str
    text: str
    response_format: str
    sse: bool

    @property
    def content_type(self) -> str:
        return "text/event-stream" if self.sse else SPEECH_TYPES.get(self.response_format, "application/octet-stream")


def parse_transcription_fields(fields: Mapping[str, str]) -> tuple[str, str]:
    """(model, response_format) from a transcription's text fields."""
    model = fields.get("model", "")
    if not model:
        raise ValueError("The 'model' field is required.")
    fmt = fields.get("response_format") or "json"
    if fmt not in TRANSCRIPT_FORMATS:
        raise ValueError(f"The 'response_format' field must be one of {', '.join(TRANSCRIPT_FORMATS)}.")
    if fields.get("stream") == "true":
        raise ValueError("Streamed transcription is not supported by this relay; leave 'stream' unset.")
    return model, fmt


def parse_speech(body: Any) -> SpeechRequest:
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("The 'model' field is required and must be a string.")
    text = body.get("input")
    if not isinstance(text, str) or not text:
        raise ValueError("The 'input' field is required and must be a non-empty string.")
    if len(text) > MAX_SPEECH_CHARS:
        raise ValueError(f"The 'input' field may hold at most {MAX_SPEECH_CHARS} characters.")
    if not isinstance(body.get("voice"), (str, dict)):
        raise ValueError("The 'voice' field is required.")
    fmt = body.get("response_format", "mp3")
    if fmt not in SPEECH_TYPES:
        raise ValueError(f"The 'response_format' field must be one of {', '.join(SPEECH_TYPES)}.")
    sf = body.get("stream_format", "audio")
    if sf not in ("audio", "sse"):
        raise ValueError("The 'stream_format' field must be 'audio' or 'sse'.")
    return SpeechRequest(model, text, fmt, sf == "sse")


def heard(raw: bytes, fmt: str) -> Heard:
    """Seconds or tokens from a transcription response in any of its formats."""
    if fmt in ("srt", "vtt"):
        ends = _CUE_END.findall(raw)
        if not ends:
            return Heard()
        h, m, s, ms = (int(x) for x in ends[-1])
        return Heard(seconds=Decimal(h * 3600 + m * 60 + s) + Decimal(ms) / 1000)
    if fmt == "text":
        return Heard()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Heard()
    if not isinstance(body, dict):
        return Heard()
    usage = _obj(body.get("usage"))
    if usage.get("type") == "tokens" or "input_tokens" in usage:
        details = _obj(usage.get("input_token_details"))
        return Heard(input_tokens=_int(usage.get("input_tokens")), output_tokens=_int(usage.get("output_tokens")),
                     audio_tokens=_int(details.get("audio_tokens")) or 0)
    for v in (usage.get("seconds"), body.get("duration")):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            return Heard(seconds=Decimal(str(v)))
    return Heard()


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def wav_seconds(head: bytes, size: int) -> Decimal | None:
    """The length of a WAV file from its first bytes and its size; None if not a WAV."""
    if len(head) < 44 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    byte_rate = 0
    while pos + 8 <= len(head):
        chunk, length = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and pos + 20 <= len(head):
            byte_rate = struct.unpack("<I", head[pos + 16:pos + 20])[0]
        if chunk == b"data":
            if not byte_rate:
                return None
            data = min(length, max(size - pos - 8, 0))
            return Decimal(data) / Decimal(byte_rate)
        pos += 8 + length + (length & 1)
    return None


def speech_seconds(fmt: str, head: bytes, size: int) -> Decimal | None:
    """The length of generated speech when its format says it exactly (pcm, wav)."""
    if fmt == "pcm":
        return Decimal(size) / PCM_BYTES_PER_SECOND
    if fmt == "wav":
        return wav_seconds(head, size)
    return None
