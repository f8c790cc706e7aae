"""The example configuration's mock channel serves every non-chat endpoint offline, so a
new user can try them without an upstream key; each call is billed like a real one."""

from __future__ import annotations

import re
from pathlib import Path

import cohere
import httpx
import openai
import pytest

from .conftest import OpenAIFactory, StartRelay

pytestmark = pytest.mark.asyncio
EXAMPLE = Path(__file__).resolve().parents[2] / "relaykit.example.yaml"


async def test_every_endpoint_on_the_mock_channel(relay_factory: StartRelay, oai: OpenAIFactory) -> None:
    # the example's groups, models and channels, on this test's database
    text = EXAMPLE.read_text(encoding="utf-8")
    body = text[text.index("groups:"):]
    relay = await relay_factory(re.sub(r"(?m)^database:.*\n(  .*\n)*", "", body))
    relay.user("demo", quota=500_000)
    key = relay.token("demo")
    c = oai(relay.base, key)

    emb = await c.embeddings.create(model="mock-embed", input=["one", "two"])  # the SDK's base64 default
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 8 and emb.usage.prompt_tokens == 2
    img = await c.images.generate(model="mock-image", prompt="a lighthouse", size="1792x1024")
    assert img.data and img.data[0].b64_json
    heard = await c.audio.transcriptions.create(model="mock-whisper", file=("a.wav", b"\x00" * 32000))
    assert heard.text == "This is the relaykit mock transcription."
    speech = await c.audio.speech.create(model="mock-tts", voice="alloy", input="hello there")
    assert speech.content.startswith(b"RIFF")
    async with httpx.AsyncClient() as http:
        ranked = await cohere.AsyncClientV2(api_key=key, base_url=relay.url, httpx_client=http,
                                            max_retries=0).rerank(model="mock-rerank", query="red apple",
                                                                  documents=["a car", "a red apple"], top_n=1)
    assert [r.index for r in ranked.results] == [1]

    await relay.settled(5)
    charges = [-e["amount"] for e in reversed(relay.ledger("demo")) if e["kind"] == "charge"]
    # 2 tokens; 1 image at factor 2; 2.02 s of audio (the mock times the whole multipart body);
    # 11 characters; 1 call
    assert charges == [1, 40_000, 101, 83, 500]
