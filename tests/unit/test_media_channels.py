"""Channel types for the non-chat operations: which wire each type speaks per operation,
the realtime socket URL, and a rerank-only type refusing chat plainly."""

from __future__ import annotations

import pytest

from relaykit.domain import Channel
from relaykit.errors import InvalidRequest
from relaykit.relay.channels import OPS, kind_for, ops_for
from relaykit.relay.channels.openai import OpenAIOps
from relaykit.relay.channels.ops import ws_url


def channel(base_url: str, type_: str = "openai") -> Channel:
    return Channel(name="c", type=type_, base_url=base_url, keys=("k",), models=("m",))


@pytest.mark.parametrize("type_, op, wire", [
    ("openai", "embeddings", "openai"),
    ("openai-compatible", "embeddings", "openai-compatible"),
    ("gemini", "embeddings", "gemini"),
    ("jina", "embeddings", "openai-compatible"),
    ("xinference", "embeddings", "openai-compatible"),
    ("cohere", "embeddings", None),
    ("jina", "rerank", "jina"),
    ("cohere", "rerank", "cohere"),
    ("xinference", "rerank", "xinference"),
    ("openai-compatible", "rerank", "jina"),
    ("openai", "rerank", None),
    ("gemini", "images.generations", None),
    ("openai", "audio.speech", "openai"),
    ("openai", "realtime", "openai"),
    ("mock", "realtime", None),
    ("mock", "audio.transcriptions", "openai"),
])
def test_wire_per_type_and_operation(type_: str, op: str, wire: str | None) -> None:
    kind = ops_for(type_)
    assert kind is not None and kind.wire(op) == wire


def test_types_without_operations() -> None:
    assert ops_for("anthropic") is None and ops_for("azure") is None
    assert set(OPS) == {"openai", "openai-compatible", "gemini", "jina", "cohere", "xinference", "mock"}


def test_realtime_socket_url_follows_the_base_url() -> None:
    ops = OpenAIOps()
    url, headers = ops.realtime_target(channel("https://api.openai.com"), "sk-up", "gpt-realtime")
    assert url == "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert headers == {"Authorization": "Bearer sk-up"}
    url, _ = ops.realtime_target(channel("http://10.0.0.5:8000/v1"), "k", "a b")
    assert url == "ws://10.0.0.5:8000/v1/realtime?model=a+b"
    assert ws_url("ftp://x") == "ftp://x"


def test_rerank_only_types_refuse_chat() -> None:
    kind = kind_for("jina")
    assert kind is not None and kind.dialects == ()
    with pytest.raises(InvalidRequest) as info:
        kind.dialect_for(channel("https://api.jina.ai", "jina"), "openai_chat")
    assert info.value.code == "unsupported_operation"
