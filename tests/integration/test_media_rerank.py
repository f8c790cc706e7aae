"""Rerank end to end: cohere ClientV2.rerank and Client.rerank, and Jina- and
Xinference-shaped requests over plain HTTP, each against every upstream type (jina,
cohere, xinference, openai-compatible); each client gets its own response shape back,
sorted and cut to top_n, billed by tokens or per call as the model's price says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import cohere
import httpx
import pytest

from .harness import UPSTREAM_KEY
from .media_support import Media, cost, media  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio

QUERY = "red apple pie"
DOCS = ["green salad", "apple pie with red apples", "red car"]
BEST = [1, 2]  # the fakes' scores: doc 1 has every query word, doc 2 one of three
TOKENS = sum(3 + len(d.split()) for d in DOCS)  # the fakes' count: query words per doc + doc words
MODELS = {"rerank-jina": "jina", "rerank-cohere": "cohere", "rerank-xinf": "xinference", "rerank-compat": "compat"}


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def expected_cost(model: str) -> int:
    per_token = {"rerank-jina": Decimal("0.02"), "rerank-xinf": Decimal("0.05"), "rerank-compat": Decimal("0.05")}
    if model == "rerank-cohere":
        return cost("0.002")
    return cost(per_token[model] * TOKENS / 1_000_000)


async def test_cohere_v2_and_v1_sdks_against_every_upstream(media: Media, http: httpx.AsyncClient) -> None:
    key = media.key("ann")
    v2 = cohere.AsyncClientV2(api_key=key, base_url=media.relay.url, httpx_client=http, max_retries=0)
    v1 = cohere.AsyncClient(api_key=key, base_url=media.relay.url, httpx_client=http, max_retries=0)
    for model, upstream in MODELS.items():
        got2 = await v2.rerank(model=model, query=QUERY, documents=DOCS, top_n=2)
        assert [r.index for r in got2.results] == BEST, model
        assert got2.results[0].relevance_score > got2.results[1].relevance_score
        assert got2.meta is not None and got2.meta.api_version.version == "2"
        assert got2.meta.billed_units.search_units == 1
        fake = media.rerankers[upstream]
        assert fake.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
        assert fake.last.json["documents"] == DOCS and fake.last.json["top_n"] == 2

        got1 = await v1.rerank(model=model, query=QUERY, documents=DOCS, top_n=3, return_documents=True)
        assert [r.index for r in got1.results] == [1, 2, 0], model
        assert [r.document.text for r in got1.results] == [DOCS[1], DOCS[2], DOCS[0]]
        assert got1.meta.api_version.version == "1"
        got1 = await v1.rerank(model=model, query=QUERY, documents=DOCS, top_n=1)
        assert got1.results[0].document is None  # Cohere v1 returns documents only when asked

    await media.relay.settled(12)
    assert media.charges("ann") == [expected_cost(m) for m in MODELS for _ in range(3)]
    dialects = [lg["dialect"] for lg in media.relay.logs()]
    assert dialects[:3] == ["rerank.cohere_v2", "rerank.cohere_v1", "rerank.cohere_v1"]


async def _post(media: Media, key: str, body: dict[str, Any], path: str = "/v1/rerank") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        async with s.post(media.relay.url + path, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
            return r.status, await r.json()


async def test_jina_and_xinference_shapes_over_plain_http(media: Media) -> None:
    key = media.key("bob")
    for model, upstream in MODELS.items():
        # Jina: object documents, documents returned by default, usage.total_tokens
        status, got = await _post(media, key, {"model": model, "query": QUERY, "top_n": 2,
                                               "documents": [{"text": d} for d in DOCS]})
        assert status == 200, got
        assert set(got) == {"model", "usage", "results"} and got["model"] == model
        assert [r["index"] for r in got["results"]] == BEST
        assert [r["document"] for r in got["results"]] == [{"text": DOCS[1]}, {"text": DOCS[2]}]
        if upstream != "cohere":
            assert got["usage"]["total_tokens"] == TOKENS
        sent = media.rerankers[upstream].last.json["documents"]
        assert sent == ([{"text": d} for d in DOCS] if upstream in ("jina", "compat") else DOCS)

        # Xinference: its client always sends return_len; meta.tokens, document null unless asked
        status, got = await _post(media, key, {"model": model, "query": QUERY, "documents": DOCS, "top_n": 2,
                                               "max_chunks_per_doc": None, "return_documents": False,
                                               "return_len": True})
        assert status == 200, got
        assert set(got) == {"id", "results", "meta"}
        assert [(r["index"], r["document"]) for r in got["results"]] == [(1, None), (2, None)]
        assert got["meta"]["api_version"] is None and got["meta"]["tokens"]["output_tokens"] == 0
        if upstream != "cohere":
            assert got["meta"]["tokens"]["input_tokens"] == TOKENS
    await media.relay.settled(8)
    assert media.charges("bob") == [expected_cost(m) for m in MODELS for _ in range(2)]
    assert {lg["dialect"] for lg in media.relay.logs()} == {"rerank.jina", "rerank.xinference"}


async def test_rerank_errors_in_the_shape_cohere_and_jina_clients_read(media: Media,
                                                                      http: httpx.AsyncClient) -> None:
    key = media.key("cy")
    v2 = cohere.AsyncClientV2(api_key=key, base_url=media.relay.url, httpx_client=http, max_retries=0)
    with pytest.raises(cohere.NotFoundError) as nf:
        await v2.rerank(model="no-such-reranker", query=QUERY, documents=DOCS)
    assert "no-such-reranker" in nf.value.body["message"]
    bad = cohere.AsyncClientV2(api_key="sk-wrong", base_url=media.relay.url, httpx_client=http, max_retries=0)
    with pytest.raises(cohere.UnauthorizedError):
        await bad.rerank(model="rerank-cohere", query=QUERY, documents=DOCS)
    status, body = await _post(media, key, {"model": "rerank-jina", "query": "", "documents": DOCS})
    assert status == 400 and "query" in body["detail"] and body["message"] == body["detail"]
    status, body = await _post(media, key, {"model": "text-embedding-3-small", "query": "q", "documents": DOCS})
    assert status == 400 and "rerank" in body["detail"]  # an embeddings-only channel cannot rerank
    media.rerankers["jina"].script = [500]
    status, body = await _post(media, key, {"model": "rerank-jina", "query": QUERY, "documents": DOCS})
    assert status == 502
    await media.relay.settled(1)
    assert media.charges("cy") == []
