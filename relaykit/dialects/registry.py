"""Dialect modules by name, so the pipeline never special-cases one of them.

Each module exposes the same functions (see hub.py and openai_chat.py): request_to_hub,
request_from_hub, response_to_hub, response_from_hub, StreamToHub, StreamFromHub,
error_body, usage_from_body.  Modules that are not installed yet are simply absent.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_NAMES = {
    "openai_chat": "openai_chat",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "openai_responses": "openai_responses",
    "rerank": "rerank",  # error bodies only: rerank is not a chat dialect
}


def dialect(name: str) -> ModuleType:
    return importlib.import_module(f"relaykit.dialects.{_NAMES[name]}")
