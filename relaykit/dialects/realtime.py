"""Realtime (``GET /v1/realtime`` WebSocket), PROTOCOLS §6.6.  Pure: the relay passes
frames through untouched and reads only what billing needs: each ``response.done``
event's usage, and the text deltas of a response cut short (for an estimate).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..domain import Usage

NAME = "realtime"
KEY_PROTOCOL = "openai-insecure-api-key."
SUBPROTOCOL = "realtime"
TEXT_DELTAS = frozenset({"response.text.delta", "response.output_text.delta", "response.audio_transcript.delta",
                         "response.output_audio_transcript.delta"})


def key_from_protocols(header: str | None) -> str | None:
    """The relay token a browser passes as the ``openai-insecure-api-key.<key>`` sub-protocol."""
    for proto in (header or "").split(","):
        proto = proto.strip()
        if proto.startswith(KEY_PROTOCOL) and len(proto) > len(KEY_PROTOCOL):
            return proto[len(KEY_PROTOCOL):]
    return None


def event_of(frame: str) -> dict[str, Any] | None:
    """The event of an upstream frame when billing needs it (``response.done`` or a text
    delta), else None without parsing the frame (audio deltas are large)."""
    if '"response.done"' not in frame and 'delta"' not in frame:
        return None
    try:
        ev = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(ev, dict) or not (ev.get("type") == "response.done" or ev.get("type") in TEXT_DELTAS):
        return None
    return ev


def delta_text(event: dict[str, Any]) -> str:
    if event.get("type") in TEXT_DELTAS and isinstance(event.get("delta"), str):
        return str(event["delta"])
    return ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _n(v: Any) -> int:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def usage_of(event: dict[str, Any]) -> Usage | None:
    """The usage of a ``response.done`` event (text and audio tokens, cached input)."""
    response = event.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    if event.get("type") != "response.done" or not isinstance(usage, dict):
        return None
    ind, outd = _obj(usage.get("input_token_details")), _obj(usage.get("output_token_details"))
    return Usage(prompt_tokens=_n(usage.get("input_tokens")), completion_tokens=_n(usage.get("output_tokens")),
                 cache_read_tokens=_n(ind.get("cached_tokens")), audio_prompt_tokens=_n(ind.get("audio_tokens")),
                 audio_completion_tokens=_n(outd.get("audio_tokens")))


def error_event(message: str, *, code: str, kind: str, event_id: str) -> str:
    return orjson.dumps({"type": "error", "event_id": event_id,
                         "error": {"type": kind, "code": code, "message": message, "param": None,
                                   "event_id": None}}).decode()
