"""Reading request bodies: JSON only, with one clear sentence for each way it can be wrong."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..errors import InvalidRequest

# Deeper JSON than any real request needs; the relay re-serialises client JSON with
# orjson, which refuses beyond 255 levels, so a deeper body must be refused here, as a 400.
MAX_DEPTH = 128


async def read_json(request: web.Request) -> Any:
    return decode_json(await request.read())


def decode_json(raw: bytes) -> Any:
    """The body as JSON, or InvalidRequest with the one sentence that says what is wrong."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None
    # a body with fewer brackets than the limit cannot nest deeper: skip the walk (most requests)
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and too_deep(body):
        raise InvalidRequest(f"The request body is nested more than {MAX_DEPTH} levels deep.")
    return body


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when objects/arrays nest more than ``limit`` levels (the top level is 1)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False
