"""Fixtures: fake upstreams and a relay in front of them; every relay is audited when
its test ends (SPEC §6.1: balance == ledger - open holds, and no hold left open)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Awaitable
from pathlib import Path

import openai
import pytest

from tests.fakes import FakeOpenAIChat

from .harness import UPSTREAM_KEY, Relay, start_relay, stop_relay, write_config


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAIChat]:
    fake = FakeOpenAIChat(keys={UPSTREAM_KEY})
    await fake.start()
    yield fake
    await fake.stop()


StartRelay = Callable[[str], Awaitable[Relay]]
OpenAIFactory = Callable[[str, str], openai.AsyncOpenAI]


@pytest.fixture
async def oai() -> AsyncIterator[OpenAIFactory]:
    """openai.AsyncOpenAI clients (no SDK retries), closed when the test ends."""
    made: list[openai.AsyncOpenAI] = []

    def make(base_url: str, key: str) -> openai.AsyncOpenAI:
        c = openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0)
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@pytest.fixture
async def relay_factory(tmp_path: Path) -> AsyncIterator[StartRelay]:
    started: list[Relay] = []

    async def start(config_body: str) -> Relay:
        relay = await start_relay(write_config(tmp_path, config_body))
        started.append(relay)
        return relay

    yield start
    for relay in started:
        await stop_relay(relay)
        assert relay.open_holds() == 0, "a hold was left open"
        assert relay.audit_ok(), "relaykit audit fails after this test"


def openai_config(upstream_url: str, *, extra_models: str = "", extra_channels: str = "") -> str:
    return f"""
groups:
  default: {{ratio: 1}}
  azure-low: {{ratio: 0.3}}
models:
  gpt-4o: {{input: 2.50, output: 10.00, cache_read: 1.25}}
  gpt-4o-mini: {{ratio: 0.075, completion_ratio: 4}}
  gpt-4: {{input: 2.50, output: 10.00}}
  fixed: {{per_call: 0.01}}
  mock-gpt: {{input: 2, output: 8}}
{extra_models}
channels:
  - name: fake-openai
    type: openai
    base_url: {upstream_url}
    keys: ["{UPSTREAM_KEY}"]
    models: [gpt-4o, gpt-4o-mini, fixed]
    model_map: {{gpt-4: gpt-4o}}
    groups: [default, azure-low]
  - name: local-mock
    type: mock
    models: [mock-gpt]
    groups: [default]
{extra_channels}
"""
