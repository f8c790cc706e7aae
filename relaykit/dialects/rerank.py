"""Rerank in four client shapes and three upstream wires (PROTOCOLS §6.2).  Pure.

Client shapes: ``jina`` and ``xinference`` and ``cohere_v1`` all arrive at
``POST /v1/rerank`` with nearly the same fields, so the shape is read from the request:
the Cohere SDK's ``X-Fern-*`` headers or Cohere-only fields mean Cohere v1, a
``return_len`` field (the Xinference client always sends it) means Xinference, anything
else is Jina, new-api's canonical rerank shape.  ``POST /v2/rerank`` is Cohere v2.

Whatever the upstream, the client gets its own shape back: results reference the input by
``index``, sorted by ``relevance_score`` descending and cut to ``top_n``, and documents
(when asked for) are the client's own documents, never the upstream's echo.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

NAME = "rerank"
SHAPES = ("jina", "cohere_v1", "cohere_v2", "xinference")
MAX_DOCUMENTS = 10_000
SEARCH_UNIT_DOCS = 100  # Cohere bills one search unit per query over up to 100 documents


@dataclass(frozen=True, slots=True)
class RerankRequest:
    shape: str
    model: str
    query: str
    documents: tuple[Any, ...]     # as the client sent them: strings or objects
    top_n: int | None
    return_documents: bool
    rank_fields: tuple[str, ...] = ()
    return_len: bool = False

    def texts(self) -> list[str]:
        return [document_text(d, self.rank_fields) for d in self.documents]


@dataclass(frozen=True, slots=True)
class Ranked:
    results: tuple[tuple[int, float], ...]   # (index, relevance_score), best first, cut to top_n
    tokens: int | None                        # input tokens the upstream reported
    search_units: int | None


def error_body(status: int, message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    """Cohere's SDK reads ``message``; Jina and Xinference (FastAPI) answer ``detail``."""
    return {"message": message, "detail": message}


def detect_shape(body: Mapping[str, Any], headers: Mapping[str, str], *, v2: bool) -> str:
    if v2:
        return "cohere_v2"
    if "return_len" in body or "kwargs" in body:
        return "xinference"
    if any(k.lower().startswith("x-fern-") for k in headers) or "rank_fields" in body:
        return "cohere_v1"
    return "jina"


def document_text(doc: Any, rank_fields: tuple[str, ...] = ()) -> str:
    """The text an upstream that takes strings ranks: a string as is, ``{"text": ...}``'s
    text, otherwise ``field: value`` lines (Cohere's rendering of structured documents)."""
    if isinstance(doc, str):
        return doc
    if not isinstance(doc, dict):
        return str(doc)
    text = doc.get("text")
    if not rank_fields and isinstance(text, str):
        return text
    keys = rank_fields or tuple(doc)
    return "\n".join(f"{k}: {doc[k]}" for k in keys if k in doc and isinstance(doc[k], (str, int, float)))


def parse(body: Any, shape: str) -> RerankRequest:
    """Validate a rerank request; ValueError says what is wrong in one sentence."""
    if not isinstance(body, dict):
        raise ValueError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("The 'model' field is required and must be a string.")
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise ValueError("The 'query' field is required and must be a non-empty string.")
    docs = body.get("documents")
    if not isinstance(docs, list) or not docs:
        raise ValueError("The 'documents' field is required and must be a non-empty array.")
    if len(docs) > MAX_DOCUMENTS:
        raise ValueError(f"At most {MAX_DOCUMENTS} documents can be reranked at once.")
    for i, d in enumerate(docs):
        if not isinstance(d, (str, dict)):
            raise ValueError(f"documents[{i}] must be a string or an object.")
    top_n = body.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise ValueError("The 'top_n' field must be a positive integer.")
    rd = body.get("return_documents")
    if rd is not None and not isinstance(rd, bool):
        raise ValueError("The 'return_documents' field must be true or false.")
    fields = body.get("rank_fields") or ()
    if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) for f in fields):
        raise ValueError("The 'rank_fields' field must be an array of field names.")
    default_rd = shape == "jina"  # Jina returns documents unless told not to; the others do not
    return RerankRequest(shape, model, query, tuple(docs), top_n, default_rd if rd is None else rd,
                         tuple(fields), bool(body.get("return_len")))


# --------------------------------------------------------------------------- upstream wires

def upstream_body(req: RerankRequest, wire: str, model: str) -> dict[str, Any]:
    """The request for an upstream speaking ``wire`` (documents are never asked back: the
    relay returns the client's own)."""
    out: dict[str, Any] = {"model": model, "query": req.query}
    if wire == "jina":
        out["documents"] = [d if isinstance(d, str) or (isinstance(d, dict) and set(d) <= {"text", "image"}
                                                           and not req.rank_fields)
                            else document_text(d, req.rank_fields) for d in req.documents]
        out["return_documents"] = False
    else:
        out["documents"] = req.texts()
    if wire == "xinference":
        out["return_documents"] = False
        out["return_len"] = True
    if req.top_n is not None:
        out["top_n"] = req.top_n
    return out


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def read_upstream(body: Any, n_documents: int, top_n: int | None) -> Ranked:
    """Results, tokens and search units from any of the Jina, Cohere or Xinference shapes."""
    if not isinstance(body, dict):
        raise ValueError("the upstream's rerank response is not a JSON object")
    items = body.get("results")
    if not isinstance(items, list):
        items = body.get("data")
    if not isinstance(items, list):
        raise ValueError("the upstream's rerank response has no 'results'")
    pairs: list[tuple[int, float]] = []
    for item in items:
        if not isinstance(item, dict):
            raise ValueError("a rerank result is not an object")
        index = item.get("index")
        score = item.get("relevance_score", item.get("score"))
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n_documents:
            raise ValueError("a rerank result names a document that was not sent")
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise ValueError("a rerank result has no relevance_score")
        pairs.append((index, float(score)))
    pairs.sort(key=lambda p: (-p[1], p[0]))
    if top_n is not None:
        pairs = pairs[:top_n]
    tokens: int | None = None
    usage = body.get("usage")
    if isinstance(usage, dict):
        tokens = _num(usage.get("total_tokens", usage.get("prompt_tokens")))
    meta = _obj(body.get("meta"))
    counted = _obj(meta.get("tokens"))
    if tokens is None and counted:
        inp, outp = _num(counted.get("input_tokens")), _num(counted.get("output_tokens"))
        tokens = None if inp is None else inp + (outp or 0)
    billed = _obj(meta.get("billed_units"))
    if tokens is None:
        tokens = _num(billed.get("input_tokens"))
    return Ranked(tuple(pairs), tokens, _num(billed.get("search_units")))


def search_units(n_documents: int) -> int:
    return max(1, -(-n_documents // SEARCH_UNIT_DOCS))


# --------------------------------------------------------------------------- client shapes

def _doc_object(doc: Any) -> Any:
    return {"text": doc} if isinstance(doc, str) else doc


def render(req: RerankRequest, ranked: Ranked, *, response_id: str, tokens: int) -> dict[str, Any]:
    """The response in the client's own shape."""
    units = ranked.search_units or search_units(len(req.documents))
    results: list[dict[str, Any]] = []
    for index, score in ranked.results:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if req.shape == "xinference":
            item["document"] = _doc_object(req.documents[index]) if req.return_documents else None
        elif req.return_documents and req.shape != "cohere_v2":
            item["document"] = _doc_object(req.documents[index])
        results.append(item)
    if req.shape == "jina":
        return {"model": req.model, "usage": {"total_tokens": tokens}, "results": results}
    if req.shape == "xinference":
        return {"id": response_id, "results": results,
                "meta": {"api_version": None, "billed_units": None,
                         "tokens": {"input_tokens": tokens, "output_tokens": 0} if req.return_len else None,
                         "warnings": None}}
    version = "2" if req.shape == "cohere_v2" else "1"
    return {"id": response_id, "results": results,
            "meta": {"api_version": {"version": version}, "billed_units": {"search_units": units}}}
