"""Fake rerank upstreams in the three wire shapes relaykit speaks: ``jina`` (Jina and
OpenAI-compatible servers, ``POST /v1/rerank``), ``cohere`` (``POST /v2/rerank``) and
``xinference`` (``POST /v1/rerank``, Cohere-like with ``meta.tokens``).

Score rule: the share of the query's words found in the document, minus index / 1000
(so ties are broken and the order is deterministic); results come back in *input* order
(not sorted, not cut to top_n): the relay must sort and cut.  Tokens = words of the
query once per document plus the words of every document.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .base import SmallFake, json_of, words


def score(query: str, doc: str, index: int) -> float:
    q = set(query.lower().split())
    return round(len(q & set(doc.lower().split())) / max(len(q), 1) - index / 1000, 6)


class FakeRerank(SmallFake):
    def __init__(self, flavor: str, key: str | None = None) -> None:
        self.flavor = flavor
        super().__init__(key)

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v2/rerank" if self.flavor == "cohere" else "/v1/rerank", self.rerank)

    async def rerank(self, request: web.Request) -> web.Response:
        body = await json_of(request)
        self.record(request, body)
        docs = [d if isinstance(d, str) else d.get("text", "") for d in body["documents"]]
        if self.flavor != "jina":
            assert all(isinstance(d, str) for d in body["documents"]), "this upstream takes strings only"
        results: list[dict[str, Any]] = [{"index": i, "relevance_score": score(body["query"], d, i)}
                                         for i, d in enumerate(docs)]
        tokens = sum(words(body["query"]) + words(d) for d in docs)
        if self.flavor == "jina":
            return web.json_response({"model": body["model"], "usage": {"total_tokens": tokens}, "results": results})
        if self.flavor == "cohere":
            return web.json_response({"id": "co-1", "results": results, "meta": {
                "api_version": {"version": "2"}, "billed_units": {"search_units": 1}}})
        return web.json_response({"id": "xi-1", "results": [{**r, "document": None} for r in results], "meta": {
            "api_version": None, "billed_units": None, "warnings": None,
            "tokens": {"input_tokens": tokens, "output_tokens": 0} if body.get("return_len") else None}})
