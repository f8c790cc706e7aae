"""Fake upstream AI providers for relaykit's tests (aiohttp apps on loopback).

Usage::

    async with FakeOpenAIChat(keys={"sk-up"}) as fake:
        fake.script = ["status:429:1"]      # first request: 429 + Retry-After: 1
        ...point the relay at fake.url...
        assert fake.last_usage["prompt_tokens"] == ...

See :mod:`tests.fakes.base` for the modes and the token-counting rule.
"""

from .anthropic import FakeAnthropic
from .base import MODES, REASONING_TEXT, FakeUpstream, Recorded, count_words
from .gemini import FakeGemini
from .openai_chat import FakeOpenAIChat
from .openai_responses import FakeOpenAIResponses

__all__ = [
    "MODES",
    "REASONING_TEXT",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAIChat",
    "FakeOpenAIResponses",
    "FakeUpstream",
    "Recorded",
    "count_words",
]
