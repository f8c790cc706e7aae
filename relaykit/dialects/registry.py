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


_LOADED: dict[str, ModuleType] = {}


def dialect(name: str) -> ModuleType:
    # looked up on every relayed request: import_module takes the import lock each call
    module = _LOADED.get(name)
    if module is None:
        module = _LOADED[name] = importlib.import_module(f"relaykit.dialects.{_NAMES[name]}")
    return module
