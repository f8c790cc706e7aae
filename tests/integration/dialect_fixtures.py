"""Shared pieces of the cross-dialect acceptance tests (issue 3).

One "world" is a relaykit server in front of four fake upstreams, one channel each:

======== ============================ ============== ======================
upstream channel                      client model   upstream model
======== ============================ ============== ======================
chat     ``openai-compatible`` (chat) ``m-chat``     ``gpt-4o``
resp     ``openai`` + ``api: responses`` ``m-resp``  ``gpt-4o``
claude   ``anthropic``                ``m-claude``   ``claude-sonnet-4-5``
gemini   ``gemini``                   ``m-gemini``   ``gemini-2.5-flash``
======== ============================ ============== ======================

Every model has the same price (USD per 1M tokens) and the ``default`` group ratio is
1.5, so :func:`expected_quota` can recompute every charge from the token counts the
fake upstream put on the wire.  The fakes report a few cache tokens (:data:`CACHE`) so
cache billing is exercised in every dialect that can carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import pytest_asyncio

from tests.fakes import FakeAnthropic, FakeGemini, FakeOpenAIChat, FakeOpenAIResponses, FakeUpstream

from .harness import UPSTREAM_KEY, Relay, start_relay, stop_relay, write_config

USD = 500_000  # quota units per USD (the default quota_per_usd)

UPSTREAMS = ("chat", "resp", "claude", "gemini")
CLIENTS = ("chat", "responses", "anthropic", "gemini")

MODEL = {"chat": "m-chat", "resp": "m-resp", "claude": "m-claude", "gemini": "m-gemini"}
UPSTREAM_MODEL = {"chat": "gpt-4o", "resp": "gpt-4o", "claude": "claude-sonnet-4-5", "gemini": "gemini-2.5-flash"}
CHANNEL = {"chat": "fake-chat", "resp": "fake-resp", "claude": "fake-claude", "gemini": "fake-gemini"}
VENDOR = {"chat": "openai", "resp": "openai", "claude": "anthropic", "gemini": "gemini"}
CLIENT_DIALECT = {"chat": "openai_chat", "responses": "openai_responses", "anthropic": "anthropic",
                  "gemini": "gemini"}

# USD per 1M tokens, the same for every model of the world.
PRICE = {"input": Decimal("3"), "output": Decimal("15"), "cache_read": Decimal("0.30"),
         "cache_write": Decimal("3.75")}
GROUP_RATIO = Decimal("1.5")

# Cache tokens each fake reports (only what its wire format can say: OpenAI chat and
# Responses and Gemini report cache reads, Anthropic reads and writes).
CACHE: dict[str, dict[str, int]] = {
    "chat": {"cache_read_tokens": 2},
    "resp": {"cache_read_tokens": 2},
    "claude": {"cache_read_tokens": 2, "cache_write_tokens": 1},
    "gemini": {"cache_read_tokens": 2},
}

TOOL_RESULT = "21C and sunny"
WEATHER_QUESTION = "What is the weather in Paris today?"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

# google-genai subclasses aiohttp.ClientSession, which aiohttp frowns upon.
GENAI_WARNING = pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")


def world_config(urls: dict[str, str], *, extra: str = "", idle: float | None = None) -> str:
    price = ", ".join(f"{k}: {v}" for k, v in PRICE.items())
    models = "\n".join(f"  {MODEL[u]}: {{{price}}}" for u in UPSTREAMS)
    config = f"""
groups:
  default: {{ratio: {GROUP_RATIO}}}
models:
{models}
channels:
  - name: {CHANNEL['chat']}
    type: openai-compatible
    base_url: {urls['chat']}
    keys: ["{UPSTREAM_KEY}"]
    models: [gpt-4o]
    model_map: {{{MODEL['chat']}: gpt-4o}}
  - name: {CHANNEL['resp']}
    type: openai
    api: responses
    base_url: {urls['resp']}
    keys: ["{UPSTREAM_KEY}"]
    models: [gpt-4o]
    model_map: {{{MODEL['resp']}: gpt-4o}}
  - name: {CHANNEL['claude']}
    type: anthropic
    base_url: {urls['claude']}
    keys: ["{UPSTREAM_KEY}"]
    models: [claude-sonnet-4-5]
    model_map: {{{MODEL['claude']}: claude-sonnet-4-5}}
  - name: {CHANNEL['gemini']}
    type: gemini
    base_url: {urls['gemini']}
    keys: ["{UPSTREAM_KEY}"]
    models: [gemini-2.5-flash]
    model_map: {{{MODEL['gemini']}: gemini-2.5-flash}}
{extra}"""
    if idle is not None:  # every channel gives up on a silent upstream after ``idle`` seconds
        config = config.replace("    keys: [", f"    timeouts: {{idle: {idle}}}\n    keys: [")
    return config


@dataclass
class World:
    relay: Relay
    fakes: dict[str, FakeUpstream]
    _users: int = 0

    def customer(self, quota: int = 10 * USD) -> tuple[str, int, str]:
        """A fresh user with its own token: ``(name, user_id, key)``."""
        self._users += 1
        name = f"u{self._users}"
        uid = self.relay.user(name, quota=quota)
        return name, uid, self.relay.token(name)


def new_fakes() -> dict[str, FakeUpstream]:
    fakes: dict[str, FakeUpstream] = {
        "chat": FakeOpenAIChat(keys={UPSTREAM_KEY}),
        "resp": FakeOpenAIResponses(keys={UPSTREAM_KEY}),
        "claude": FakeAnthropic(keys={UPSTREAM_KEY}),
        "gemini": FakeGemini(keys={UPSTREAM_KEY}),
    }
    for name, fake in fakes.items():
        fake.usage_override = dict(CACHE[name])
    return fakes


@contextlib.asynccontextmanager
async def world(tmp: Path, *, extra: str = "", idle: float | None = None) -> AsyncIterator[World]:
    """Start the fakes and a relay in front of them; on exit stop everything and check
    the relay's books (no hold left open, audit clean)."""
    fakes = new_fakes()
    urls = {name: await fake.start() for name, fake in fakes.items()}
    relay = await start_relay(write_config(tmp, world_config(urls, extra=extra, idle=idle)))
    try:
        yield World(relay, fakes)
    finally:
        await stop_relay(relay)
        for fake in fakes.values():
            await fake.stop()
    assert relay.open_holds() == 0, "a hold was left open"
    assert relay.audit_ok(), "relaykit audit fails"


# --------------------------------------------------------------------------- clients


@dataclass
class Clients:
    """SDK clients pointed at one relay, without retries, closed by :meth:`aclose`."""

    relay: Relay
    made: list[Any] = field(default_factory=list)

    def openai(self, key: str) -> openai.AsyncOpenAI:
        c = openai.AsyncOpenAI(base_url=self.relay.base, api_key=key, max_retries=0)
        self.made.append(c)
        return c

    def anthropic(self, key: str) -> anthropic.AsyncAnthropic:
        c = anthropic.AsyncAnthropic(base_url=self.relay.url, api_key=key, max_retries=0)
        self.made.append(c)
        return c

    def genai(self, key: str) -> Any:
        from google import genai
        from google.genai import types

        c = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=self.relay.url))
        self.made.append(c)
        return c.aio

    async def aclose(self) -> None:
        for c in self.made:
            if isinstance(c, (openai.AsyncOpenAI, anthropic.AsyncAnthropic)):
                await c.close()
            else:
                await c.aio.aclose()
        self.made.clear()


def module_fixtures(name: str, **world_args: Any) -> tuple[Any, Any]:
    """The ``shared`` (one relay and its fakes per test module) and ``clients`` (SDK
    clients per test) fixtures a dialect test module binds at its top:
    ``shared, clients = module_fixtures("matrix")``."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module", name="shared")
    async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
        async with world(Path(tmp_path_factory.mktemp(name)), **world_args) as w:
            yield w

    @pytest_asyncio.fixture(loop_scope="module", name="clients")
    async def clients(shared: World) -> AsyncIterator[Clients]:
        c = Clients(shared.relay)
        yield c
        await c.aclose()

    return shared, clients


# --------------------------------------------------------------------------- billing


def expected_quota(prompt: int, completion: int, cache_read: int = 0, cache_write: int = 0) -> int:
    """The charge of SPEC §5 written in dollars: the uncached prompt at the input price,
    cache reads and writes at theirs, the completion at the output price, times the
    group ratio; one USD is :data:`USD` quota units."""
    uncached = prompt - cache_read - cache_write
    dollars = (uncached * PRICE["input"] + completion * PRICE["output"] + cache_read * PRICE["cache_read"]
               + cache_write * PRICE["cache_write"]) / Decimal(1_000_000) * GROUP_RATIO
    return int((dollars * USD).to_integral_value(rounding=ROUND_CEILING))


def wire_usage(fake: FakeUpstream, index: int) -> dict[str, int]:
    """The normalised usage the fake put on the wire for its ``index``-th request."""
    usage = fake.requests[index].usage
    assert usage is not None, "the fake did not answer this request"
    return usage


async def settled_for(relay: Relay, user_id: int, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Wait until ``user_id`` has ``n`` request logs and no hold is open; return the logs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = [r for r in relay.logs() if r["user_id"] == user_id]
        if len(rows) >= n and relay.open_holds() == 0:
            return rows
        if loop.time() > deadline:
            raise AssertionError(f"user {user_id}: expected {n} settled requests, have {len(rows)} logs "
                                 f"and {relay.open_holds()} open holds")
        await asyncio.sleep(0.01)


def charges(relay: Relay, user: str) -> dict[str, int]:
    """request id -> amount charged (positive) for every charge in the user's ledger."""
    return {e["request_id"]: -e["amount"] for e in relay.ledger(user) if e["kind"] == "charge"}
