"""One relay in front of every fake non-chat upstream, for the test_media_* modules.

Prices cover every basis in both notations; ``Media.cost`` recomputes a charge from the
price table by hand (the tests' independent statement of SPEC §5), and ``Media.charges``
reads the ledger.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from tests.fakes_more import FakeGeminiEmbed, FakeOpenAIMedia, FakeRerank

from .harness import UPSTREAM_KEY, Relay, start_relay, stop_relay, write_config

USD = 500_000
D = Decimal

PRICES = """
  text-embedding-3-small: {input: 0.02}
  emb-compat: {input: 0.1}
  text-embedding-004: {ratio: 0.05}
  embed-fixed: {per_call: 0.001}
  emb-unpriced-image: {per_image: 0.01}
  dall-e-3:
    per_image: 0.04
    image_sizes: {"1024x1024": 1, "1792x1024": 2, "1024x1792": 2}
    image_qualities: {standard: 1, hd: 2}
  dall-e-2: {image_ratio: 10}
  gpt-image-1: {input: 5, output: 40}
  whisper-1: {per_second: 0.0001}
  whisper-ratio: {second_ratio: 0.05}
  gpt-4o-transcribe: {input: 2.5, output: 10, audio_input: 6}
  tts-1: {per_1m_chars: 15}
  tts-ratio: {char_ratio: 7.5}
  gpt-realtime: {input: 4, output: 16, audio_input: 32, audio_output: 64}
  rerank-jina: {input: 0.02}
  rerank-cohere: {per_call: 0.002}
  rerank-xinf: {ratio: 0.025}
  rerank-compat: {input: 0.05}
"""

OPENAI_MODELS = ("text-embedding-3-small, embed-fixed, emb-unpriced, emb-unpriced-image, dall-e-3, dall-e-2, "
                 "gpt-image-1, whisper-1, whisper-ratio, gpt-4o-transcribe, tts-1, tts-ratio, gpt-realtime")


@dataclass
class Media:
    relay: Relay
    openai: FakeOpenAIMedia
    compat: FakeOpenAIMedia
    gemini: FakeGeminiEmbed
    rerankers: dict[str, FakeRerank]

    @property
    def prices(self) -> dict[str, object]:
        return dict(self.relay.settings.prices)

    def charges(self, user: str) -> list[int]:
        """Each charge of ``user``, oldest first (positive quota)."""
        return [-e["amount"] for e in reversed(self.relay.ledger(user)) if e["kind"] == "charge"]

    def key(self, user: str, usd: float = 10.0) -> str:
        self.relay.user(user, quota=int(usd * USD))
        return self.relay.token(user)


def cost(usd: Decimal | float | str, group_ratio: Decimal = D(1)) -> int:
    """quota = ceil(group_ratio × USD × quota_per_usd)."""
    return math.ceil(group_ratio * D(str(usd)) * USD)


def media_config(m_openai: str, m_compat: str, m_gemini: str, rr: dict[str, str]) -> str:
    return f"""
groups:
  default: {{ratio: 1}}
  half: {{ratio: 0.5}}
models:
{PRICES}
channels:
  - name: openai-media
    type: openai
    base_url: {m_openai}
    keys: ["{UPSTREAM_KEY}"]
    models: [{OPENAI_MODELS}]
    groups: [default, half]
  - name: compat-media
    type: openai-compatible
    base_url: {m_compat}/v1
    keys: ["{UPSTREAM_KEY}"]
    models: [emb-compat]
  - name: gemini-embed
    type: gemini
    base_url: {m_gemini}
    keys: ["{UPSTREAM_KEY}"]
    models: [text-embedding-004]
  - name: jina-rr
    type: jina
    base_url: {rr['jina']}
    keys: ["{UPSTREAM_KEY}"]
    models: [rerank-jina]
  - name: cohere-rr
    type: cohere
    base_url: {rr['cohere']}
    keys: ["{UPSTREAM_KEY}"]
    models: [rerank-cohere]
  - name: xinf-rr
    type: xinference
    base_url: {rr['xinference']}
    keys: ["{UPSTREAM_KEY}"]
    models: [rerank-xinf]
  - name: compat-rr
    type: openai-compatible
    base_url: {rr['compat']}
    keys: ["{UPSTREAM_KEY}"]
    models: [rerank-compat]
"""


@pytest.fixture
async def media(tmp_path: Path) -> AsyncIterator[Media]:
    openai_fake, compat = FakeOpenAIMedia(UPSTREAM_KEY), FakeOpenAIMedia(UPSTREAM_KEY)
    compat.ignore_base64 = True
    gemini = FakeGeminiEmbed(UPSTREAM_KEY)
    rerankers = {"jina": FakeRerank("jina", UPSTREAM_KEY), "cohere": FakeRerank("cohere", UPSTREAM_KEY),
                 "xinference": FakeRerank("xinference", UPSTREAM_KEY), "compat": FakeRerank("jina", UPSTREAM_KEY)}
    fakes = [openai_fake, compat, gemini, *rerankers.values()]
    for f in fakes:
        await f.start()
    relay = await start_relay(write_config(tmp_path, media_config(
        openai_fake.url, compat.url, gemini.url, {k: v.url for k, v in rerankers.items()})))
    try:
        yield Media(relay, openai_fake, compat, gemini, rerankers)
    finally:
        await stop_relay(relay)
        for f in fakes:
            await f.stop()
        assert relay.open_holds() == 0, "a hold was left open"
        assert relay.audit_ok(), "relaykit audit fails after this test"
