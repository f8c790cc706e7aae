"""Helpers for the accounts-and-money tests: a config with check-in and self-registration
on, customers with passwords or ready-made sessions, cards issued with the relay's own
card key, and a small client for the seed-shaped /api answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from relaykit.server.api_auth import ACCOUNTS
from relaykit.store import accounts, billing, cards, sessions

from .harness import Relay

USD = 500_000

ACCOUNTS_CONFIG = """
billing:
  quota_per_usd: 500000
  checkin: {enabled: true, min_usd: 0.01, max_usd: 0.05}
  timezone: "Asia/Shanghai"
accounts: {self_registration: true, session_days: 1}
groups:
  default: {ratio: 1}
  vip: {ratio: 0.5}
models:
  mock-gpt: {input: 2, output: 8}
  mock-mini: {ratio: 0.075, completion_ratio: 4}
channels:
  - name: local-mock
    type: mock
    models: [mock-gpt, mock-mini]
    groups: [default, vip]
"""

# A real scrypt hash is slow on purpose; tests that need many customers hash once.
PASSWORD = "correct-horse-battery"


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def data(self) -> Any:
        return self.body["data"]

    @property
    def message(self) -> str:
        return str(self.body["message"])


def customer(relay: Relay, name: str, *, usd: float = 0, password_hash: str | None = None,
             group: str = "default") -> int:
    def make(t: Any) -> int:
        u = accounts.create_user(t, name, group=group, password_hash=password_hash)
        if usd:
            billing.topup(t, name, int(usd * USD), note="test setup")
        return int(u.id)
    return relay.store.tx(make)


def session_for(relay: Relay, name: str, lifetime: float = 3600) -> str:
    """A live session token without the (slow) password check."""
    return relay.store.tx(lambda t: sessions.create_session(t, accounts.user_row(t, name).id, lifetime=lifetime)[0])


def card_key(relay: Relay) -> bytes:
    return relay.runner.app[ACCOUNTS].card_key


def issue_cards(relay: Relay, *, usd: float, count: int = 1, expires_at: float | None = None,
                prefix: str = "T") -> list[str]:
    key = card_key(relay)
    return relay.store.tx(lambda t: cards.issue(t, key, amount=int(usd * USD), count=count, prefix=prefix,
                                                expires_at=expires_at, batch="test"))


def card_with_code(relay: Relay, code: str, *, usd: float) -> None:
    """A card whose code the test chose (the README's example code)."""
    key = card_key(relay)
    relay.store.tx(lambda t: t.Card.create(code_hash=cards.code_hash(key, code), hint=cards.hint_of(code),
                                           amount=int(usd * USD), batch="readme"))


class Api:
    """aiohttp calls to one relay; every answer must have the seed's shape."""

    def __init__(self, http: aiohttp.ClientSession, relay: Relay) -> None:
        self.http = http
        self.relay = relay

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   headers: dict[str, str] | None = None) -> Answer:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.relay.url + path, json=json, headers=h) as resp:
            body = await resp.json(content_type=None)
            if path.startswith("/api/"):
                assert set(body) == {"success", "message", "data"}, body
                assert body["success"] is (resp.status == 200), (resp.status, body)
            return Answer(resp.status, body)

    async def login(self, name: str, password: str = PASSWORD) -> str:
        a = await self.call("POST", "/api/user/login", json={"username": name, "password": password})
        assert a.status == 200, a.body
        return str(a.data["token"])

    async def chat(self, key: str, content: str = "hello", model: str = "mock-gpt") -> Answer:
        return await self.call("POST", "/v1/chat/completions", token=key,
                               json={"model": model, "messages": [{"role": "user", "content": content}]})
