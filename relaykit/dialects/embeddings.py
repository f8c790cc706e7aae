"""Embeddings: OpenAI ``POST /v1/embeddings`` and Gemini ``:embedContent`` /
``:batchEmbedContents`` (PROTOCOLS §6.1, §4.6).  Pure translators.

The hub is the OpenAI shape.  An OpenAI client's body passes through to an OpenAI
upstream (model renamed); everything else is rebuilt here.  Vectors travel in whichever
encoding the upstream chose and are re-encoded for the client: base64 is the
little-endian float32 array, as OpenAI sends it, and a client that asked for base64 gets
base64 even from an upstream (Gemini, most local servers) that only knows floats.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

NAME = "embeddings"
GEMINI_ACTIONS = ("embedContent", "batchEmbedContents")
MAX_INPUTS = 2048


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    model: str
    texts: tuple[str, ...]        # the string inputs (empty when the input is token ids)
    token_ids: int                # how many tokens arrived as token ids
    encoding: str                 # what the client gets back: "float" or "base64"
    dimensions: int | None
    count: int = 1                # how many inputs (vectors expected back)
    gemini_requests: tuple[dict[str, Any], ...] = ()  # a Gemini client's request objects, as sent
    gemini_action: str = ""       # the Gemini client's method; "" for an OpenAI client


def _positive_int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"The '{what}' field must be a positive integer.")
    return value


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in value)


def parse_openai(body: Any) -> EmbedRequest:
    """Validate an OpenAI embeddings body; ValueError says what is wrong in one sentence."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("The 'model' field is required and must be a string.")
    raw = body.get("input")
    texts: list[str] = []
    ids, count = 0, 1
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and _is_ids(raw):
        ids = len(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        texts, count = list(raw), len(raw)
    elif isinstance(raw, list) and raw and all(_is_ids(x) for x in raw):
        ids, count = sum(len(x) for x in raw), len(raw)
    else:
        raise ValueError("The 'input' field must be a string, an array of strings, an array of token ids "
                         "or an array of token-id arrays, and must not be empty.")
    if isinstance(raw, list) and not _is_ids(raw) and len(raw) > MAX_INPUTS:
        raise ValueError(f"The 'input' array may hold at most {MAX_INPUTS} items.")
    if any(not t for t in texts):
        raise ValueError("The 'input' strings must not be empty.")
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ("float", "base64"):
        raise ValueError("The 'encoding_format' field must be 'float' or 'base64'.")
    return EmbedRequest(model, tuple(texts), ids, encoding, _positive_int(body.get("dimensions"), "dimensions"),
                        count)


def _content_text(content: Any) -> str | None:
    """The text of a Gemini content, or None when it holds something other than text."""
    if isinstance(content, str):
        return content
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return None
    out = []
    for part in content["parts"]:
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            return None
        out.append(part["text"])
    return "\n".join(out)


def parse_gemini(body: Any, action: str, model: str) -> EmbedRequest:
    """A Gemini client's embedContent or batchEmbedContents body."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    reqs: list[dict[str, Any]] = [body]
    if action != "embedContent":
        given = body.get("requests")
        if not isinstance(given, list) or not given or not all(isinstance(r, dict) for r in given):
            raise ValueError("The 'requests' field is required and must be a non-empty array of objects.")
        reqs = given
        if len(reqs) > MAX_INPUTS:
            raise ValueError(f"At most {MAX_INPUTS} requests fit in one batch.")
    texts: list[str] = []
    dims: set[int] = set()
    for i, r in enumerate(reqs):
        if not isinstance(r.get("content"), dict):
            raise ValueError(f"requests[{i}].content is required and must be an object with 'parts'."
                             if action != "embedContent" else "The 'content' field is required.")
        text = _content_text(r["content"])
        texts.append(text if text is not None else "")
        d = _positive_int(r.get("outputDimensionality"), "outputDimensionality")
        if d is not None:
            dims.add(d)
    if len(dims) > 1:
        raise ValueError("All requests of one batch must ask for the same outputDimensionality.")
    return EmbedRequest(model, tuple(texts), 0, "float", dims.pop() if dims else None, len(reqs),
                        gemini_requests=tuple(reqs), gemini_action=action)


def openai_body(req: EmbedRequest, model: str) -> dict[str, Any]:
    """An OpenAI request for a client that is not an OpenAI client (floats asked for)."""
    if req.gemini_requests and any(_content_text(r.get("content")) is None for r in req.gemini_requests):
        raise ValueError("Only text contents can be embedded by this model's upstream.")
    out: dict[str, Any] = {"model": model, "input": list(req.texts), "encoding_format": "float"}
    if req.dimensions:
        out["dimensions"] = req.dimensions
    return out


def gemini_body(req: EmbedRequest, model: str) -> dict[str, Any]:
    """A batchEmbedContents body: a Gemini client's own requests (model renamed), or one
    request per OpenAI input string."""
    name = "models/" + model.removeprefix("models/")
    if req.gemini_requests:
        return {"requests": [{**r, "model": name} for r in req.gemini_requests]}
    if req.token_ids:
        raise ValueError("Token-id inputs cannot be sent to a Gemini upstream; send text.")
    extra = {"outputDimensionality": req.dimensions} if req.dimensions else {}
    return {"requests": [{"model": name, "content": {"parts": [{"text": t}]}, **extra} for t in req.texts]}


# --------------------------------------------------------------------------- vectors

def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_base64(data: str) -> list[float]:
    raw = base64.b64decode(data)
    if len(raw) % 4:
        raise ValueError("a base64 embedding is not a float32 array")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _as(vector: Any, encoding: str) -> Any:
    if encoding == "base64":
        return vector if isinstance(vector, str) else encode_base64(vector)
    return decode_base64(vector) if isinstance(vector, str) else vector


def vectors_from_openai(body: Any) -> list[Any]:
    """The vectors of an OpenAI response in input order (float lists or base64 strings)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("the upstream's embeddings response has no 'data' array")
    items = sorted(data, key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
    out = []
    for d in items:
        vec = d.get("embedding") if isinstance(d, dict) else None
        if not isinstance(vec, (list, str)):
            raise ValueError("an embedding in the upstream's response is neither a list nor base64")
        out.append(vec)
    return out


def vectors_from_gemini(body: Any) -> list[Any]:
    items: Any = None
    if isinstance(body, dict):
        items = [body["embedding"]] if isinstance(body.get("embedding"), dict) else body.get("embeddings")
    if not isinstance(items, list) or not all(isinstance(e, dict) and isinstance(e.get("values"), list)
                                              for e in items):
        raise ValueError("the upstream's Gemini embeddings response has no 'embeddings' values")
    return [e["values"] for e in items]


def prompt_tokens_of(body: Any) -> int | None:
    """The upstream's input-token count: OpenAI ``usage.prompt_tokens`` or Gemini
    ``usageMetadata.promptTokenCount``; None when it reports none."""
    if not isinstance(body, dict):
        return None
    for outer, inner in (("usage", "prompt_tokens"), ("usage", "total_tokens"),
                         ("usageMetadata", "promptTokenCount")):
        got = body.get(outer)
        if isinstance(got, dict):
            n = got.get(inner)
            if isinstance(n, int) and not isinstance(n, bool):
                return n
    return None


def reencode_openai(body: dict[str, Any], encoding: str) -> bool:
    """Put every vector of an OpenAI response in ``encoding``, in place; True if any changed."""
    changed = False
    for d in body.get("data") or ():
        if isinstance(d, dict) and "embedding" in d:
            want = _as(d["embedding"], encoding)
            if want is not d["embedding"]:
                d["embedding"] = want
                changed = True
    return changed


def openai_response(model: str, vectors: list[Any], prompt_tokens: int, encoding: str) -> dict[str, Any]:
    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": _as(v, encoding)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def gemini_response(action: str, vectors: list[Any]) -> dict[str, Any]:
    floats = [_as(v, "float") for v in vectors]
    if action == "embedContent":
        return {"embedding": {"values": floats[0] if floats else []}}
    return {"embeddings": [{"values": v} for v in floats]}
