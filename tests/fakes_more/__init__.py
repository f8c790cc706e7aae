"""Small fake upstreams for the non-chat endpoints (embeddings, rerank, images, audio,
realtime), in the style of tests/fakes: aiohttp apps on loopback that record what they
receive and answer deterministically.  See each module for the rules."""

from .base import SmallFake, Seen, words
from .gemini_embed import FakeGeminiEmbed
from .openai_media import FakeOpenAIMedia, fake_vector
from .rerank import FakeRerank

__all__ = ["FakeGeminiEmbed", "FakeOpenAIMedia", "FakeRerank", "Seen", "SmallFake", "fake_vector", "words"]
