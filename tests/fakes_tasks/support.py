"""Helpers for the task tests: a config with short poll intervals, channel snippets, and a
small HTTP client that polls a fetch endpoint until a condition holds (with a deadline,
never a fixed sleep)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.integration.harness import Relay

QPU = 500_000
PRICES = {"mj_imagine": "0.1", "mj_upscale": "0.02", "mj_variation": "0.03", "mj_reroll": "0.1",
          "mj_blend": "0.1", "mj_describe": "0.05", "suno_music": "0.2", "suno_lyrics": "0.01",
          "kling-v1": "0.5", "kling-v1-pro": "0.8", "jimeng-v1": "0.3", "sora-2": "0.4"}


def quota(model: str, factor: float = 1.0) -> int:
    from decimal import ROUND_CEILING, Decimal
    return int((Decimal(PRICES[model]) * Decimal(str(factor)) * QPU).to_integral_value(rounding=ROUND_CEILING))


def channel(name: str, ctype: str, url: str, key: str, models: list[str], priority: int = 0) -> str:
    return f"""
  - name: {name}
    type: {ctype}
    base_url: {url}
    keys: ["{key}"]
    models: [{", ".join(models)}]
    groups: [default]
    priority: {priority}
    timeouts: {{connect: 2, first_byte: 5, idle: 5}}
"""


def config(*channels: str, poll: float = 0.03, deadline: float = 30.0, allow_private: bool = False) -> str:
    prices = "\n".join(f"  {m}: {{per_call: {p}}}" for m, p in PRICES.items())
    return f"""
tasks: {{poll_seconds: {poll}, poll_max_seconds: 0.2, deadline_seconds: {deadline},
        hooks_allow_private: {"true" if allow_private else "false"}}}
groups:
  default: {{ratio: 1}}
models:
{prices}
  gpt-4o: {{input: 2.5, output: 10}}
channels:
{"".join(channels)}
"""


class TaskClient:
    """JSON over HTTP to one relay with one customer's key."""

    def __init__(self, relay: Relay, session: aiohttp.ClientSession, key: str, *, header: str = "Authorization"):
        self.relay = relay
        self.session = session
        self.key = key
        self.header = header

    def _headers(self) -> dict[str, str]:
        if self.header == "Authorization":
            return {"Authorization": f"Bearer {self.key}"}
        return {self.header: self.key}

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(self.relay.url + path, json=body, headers=self._headers()) as resp:
            return resp.status, await resp.json(content_type=None)

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.relay.url + path, headers=self._headers()) as resp:
            return resp.status, await resp.json(content_type=None)

    async def raw(self, path: str) -> tuple[int, str, bytes]:
        async with self.session.get(self.relay.url + path, headers=self._headers()) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

    async def until(self, path: str, done: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """GET ``path`` until ``done(body)``; fail with the last body after ``timeout``."""
        return await wait_for(lambda: self.get(path), lambda got: got[0] == 200 and done(got[1]), timeout)


async def wait_for(probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = probe()
        if asyncio.iscoroutine(last):
            last = await last
        if done(last):
            return last[1] if isinstance(last, tuple) and len(last) == 2 else last
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s; last answer: {last!r}")
        await asyncio.sleep(0.01)


def task_row(relay: Relay, task_id: str) -> dict[str, Any]:
    return relay.store.tx(lambda t: t.Task.select().where(t.Task.task_id == task_id).dicts().get())


def ledger_for(relay: Relay, user: str, task_id: str) -> list[dict[str, Any]]:
    return [e for e in relay.ledger(user) if e["request_id"] == "task-" + task_id]
