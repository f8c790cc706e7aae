"""Embeddings end to end: the openai SDK (float, base64, its base64 default, dimensions,
token ids) and google-genai (embed_content) against OpenAI, OpenAI-compatible and
Gemini upstreams, each billed by input tokens (or per call) in the ledger."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from relaykit.dialects.embeddings import decode_base64
from tests.fakes_more import fake_vector

from .conftest import OpenAIFactory
from .harness import UPSTREAM_KEY
from .media_support import D, Media, cost, media  # noqa: F401 - the fixture

pytestmark = pytest.mark.asyncio
# google-genai subclasses aiohttp.ClientSession, which aiohttp warns about (not ours to fix)
GENAI_WARNING = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")

F32 = 1e-6  # base64 carries float32


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < F32 for x, y in zip(a, b))


async def test_openai_sdk_float_base64_default_and_dimensions(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("ann"))
    texts = ["the quick brown fox", "jumps"]

    got = await c.embeddings.create(model="text-embedding-3-small", input=texts, encoding_format="float")
    assert [d.embedding for d in got.data] == [fake_vector(t) for t in texts]
    assert media.openai.last.json["encoding_format"] == "float"
    assert got.usage.prompt_tokens == 5

    # explicit base64: the caller gets the raw string, and it decodes to the vector
    got = await c.embeddings.create(model="text-embedding-3-small", input="hello world", encoding_format="base64")
    assert isinstance(got.data[0].embedding, str)
    assert close(decode_base64(got.data[0].embedding), fake_vector("hello world"))

    # the SDK's default: it asks base64 behind the caller's back and decodes it
    got = await c.embeddings.create(model="text-embedding-3-small", input="hello world", dimensions=6)
    assert media.openai.last.json["encoding_format"] == "base64"
    assert media.openai.last.json["dimensions"] == 6
    assert close(list(got.data[0].embedding), fake_vector("hello world", 6))

    # token ids pass through untouched
    got = await c.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4, 5]],
                                    encoding_format="float")
    assert media.openai.last.json["input"] == [[1, 2, 3], [4, 5]]
    assert len(got.data) == 2 and got.usage.prompt_tokens == 5

    await media.relay.settled(4)
    per_token = D("0.02") / 1_000_000
    assert media.charges("ann") == [cost(5 * per_token), cost(2 * per_token), cost(2 * per_token),
                                    cost(5 * per_token)]
    logs = media.relay.logs()
    assert [lg["dialect"] for lg in logs] == ["embeddings"] * 4
    assert [lg["prompt_tokens"] for lg in logs] == [5, 2, 2, 5] and not any(lg["estimated"] for lg in logs)


async def test_compatible_upstream_gets_floats_and_the_client_still_gets_base64(media: Media,
                                                                               oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("bea"))
    got = await c.embeddings.create(model="emb-compat", input="some words here", encoding_format="base64")
    assert media.compat.last.json["encoding_format"] == "float"  # relaykit asked floats
    assert close(decode_base64(got.data[0].embedding), fake_vector("some words here"))
    got = await c.embeddings.create(model="emb-compat", input="default decodes")  # the SDK default
    assert close(list(got.data[0].embedding), fake_vector("default decodes"))
    await media.relay.settled(2)
    assert media.charges("bea") == [cost(D("0.1") * 3 / 1_000_000), cost(D("0.1") * 2 / 1_000_000)]


async def test_openai_client_served_by_a_gemini_upstream(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("cal"))
    got = await c.embeddings.create(model="text-embedding-004", input=["alpha beta", "gamma"], dimensions=3,
                                    encoding_format="float")
    sent = media.gemini.last
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == UPSTREAM_KEY
    assert sent.json["requests"][0] == {"model": "models/text-embedding-004",
                                        "content": {"parts": [{"text": "alpha beta"}]}, "outputDimensionality": 3}
    assert [d.embedding for d in got.data] == [fake_vector("alpha beta", 3), fake_vector("gamma", 3)]
    got = await c.embeddings.create(model="text-embedding-004", input="as base64 please")
    assert close(list(got.data[0].embedding), fake_vector("as base64 please"))
    await media.relay.settled(2)
    logs = media.relay.logs()
    assert all(lg["estimated"] for lg in logs)  # Gemini reported no token count: estimated, still charged
    assert media.charges("cal") == [cost(D("0.1") * lg["prompt_tokens"] / 1_000_000) for lg in logs]
    assert all(lg["prompt_tokens"] > 0 for lg in logs)


@GENAI_WARNING
async def test_google_genai_embed_content_passthrough_and_converted(media: Media) -> None:
    key = media.key("dee")
    media.gemini.report_usage = True
    client = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=media.relay.url))
    try:
        await _genai_calls(media, client)
    finally:
        await client.aio.aclose()


async def _genai_calls(media: Media, client: genai.Client) -> None:
    got = await client.aio.models.embed_content(model="text-embedding-004", contents=["one two three", "four"],
                                                config=genai_types.EmbedContentConfig(output_dimensionality=5))
    assert [e.values for e in got.embeddings] == [fake_vector("one two three", 5), fake_vector("four", 5)]
    sent = media.gemini.last.json["requests"]
    assert [r["outputDimensionality"] for r in sent] == [5, 5]

    # the same SDK served by an OpenAI upstream
    got = await client.aio.models.embed_content(model="text-embedding-3-small", contents="hello there")
    assert media.openai.last.json == {"model": "text-embedding-3-small", "input": ["hello there"],
                                      "encoding_format": "float"}
    assert got.embeddings[0].values == fake_vector("hello there")
    await media.relay.settled(2)
    assert media.charges("dee") == [cost(D("0.1") * 4 / 1_000_000), cost(D("0.02") * 2 / 1_000_000)]

    # errors come back in Gemini's shape: the SDK raises ClientError with the status
    with pytest.raises(genai_errors.ClientError) as info:
        await client.aio.models.embed_content(model="no-such-model", contents="x")
    assert info.value.code == 404


async def test_gemini_embed_content_single_method_over_plain_http(media: Media) -> None:
    key = media.key("eve")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{media.relay.url}/v1beta/models/text-embedding-004:embedContent",
                          headers={"x-goog-api-key": key},
                          json={"content": {"parts": [{"text": "single"}]}, "taskType": "RETRIEVAL_DOCUMENT"}) as r:
            assert r.status == 200
            assert await r.json() == {"embedding": {"values": fake_vector("single")}}
    assert media.gemini.last.json["requests"][0]["taskType"] == "RETRIEVAL_DOCUMENT"
    await media.relay.settled(1)


async def test_per_call_unpriced_and_wrong_basis(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("fay"))
    await c.embeddings.create(model="embed-fixed", input="priced per call", encoding_format="float")
    seen = len(media.openai.seen)
    with pytest.raises(openai.BadRequestError) as info:
        await c.embeddings.create(model="emb-unpriced", input="free?")
    assert info.value.code == "model_not_priced"
    with pytest.raises(openai.BadRequestError) as info:
        await c.embeddings.create(model="emb-unpriced-image", input="per image?")
    assert info.value.code == "model_not_priced" and "per image" in info.value.message
    with pytest.raises(openai.NotFoundError):
        await c.embeddings.create(model="nope", input="x")
    with pytest.raises(openai.BadRequestError):
        await c.embeddings.create(model="text-embedding-3-small", input=[])
    assert len(media.openai.seen) == seen, "a refused request reached the upstream"
    await media.relay.settled(1)
    assert media.charges("fay") == [cost("0.001")]


async def test_upstream_errors_cost_nothing(media: Media, oai: OpenAIFactory) -> None:
    c = oai(media.relay.base, media.key("gus"))
    media.openai.script = [400]
    with pytest.raises(openai.BadRequestError):
        await c.embeddings.create(model="text-embedding-3-small", input="bad", encoding_format="float")
    media.openai.script = [503]
    with pytest.raises(openai.InternalServerError):  # one channel serves the model: nothing to fail over to
        await c.embeddings.create(model="text-embedding-3-small", input="down", encoding_format="float")
    await media.relay.settled(2)
    assert media.charges("gus") == []
    assert [lg["status"] for lg in media.relay.logs()] == [400, 502]
