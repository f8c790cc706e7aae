"""A real relaykit server on 127.0.0.1:0 with a temporary SQLite database.

The app is built by the same factory `relaykit serve` uses and runs in the test's event
loop; the database writer and the cache refresher run in their own threads as in
production.  Helpers create users and tokens through the same repositories the CLI uses.
"""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from relaykit.server.app import create_app
from relaykit.server.fastlane import LaneSite
from relaykit.settings import Settings, load_settings
from relaykit.store import accounts, billing
from relaykit.store.store import Store

UPSTREAM_KEY = "sk-upstream-CANARY-7f3a9c1e5b2d4a6f8e0c1b3d5f7a9c2e"


@dataclass
class Relay:
    url: str
    settings: Settings
    store: Store
    config_path: Path
    runner: web.AppRunner

    @property
    def base(self) -> str:
        return self.url + "/v1"

    @property
    def quota_per_usd(self) -> int:
        return self.settings.billing.quota_per_usd

    def user(self, name: str, *, quota: int = 0, group: str = "default") -> int:
        def make(t: Any) -> int:
            u = accounts.create_user(t, name, group=group)
            if quota:
                billing.topup(t, name, quota)
            return int(u.id)
        return self.store.tx(make)

    def token(self, user: str, *, name: str = "t", quota: int | None = None, models: list[str] | None = None,
              ips: list[str] | None = None, expires_at: float | None = None, group: str | None = None) -> str:
        def make(t: Any) -> str:
            u = accounts.user_row(t, user)
            _, key = accounts.create_token(t, user_id=u.id, name=name, quota=quota, expires_at=expires_at,
                                           group=group, models=models or [], ips=ips or [], rpm=None, tpm=None)
            return key
        return self.store.tx(make)

    def balance(self, user: str) -> int:
        return int(self.store.tx(lambda t: accounts.user_row(t, user).balance))

    def ledger(self, user: str) -> list[dict[str, Any]]:
        return self.store.tx(lambda t: billing.ledger_entries(t, accounts.user_row(t, user).id, limit=10_000))

    def logs(self) -> list[dict[str, Any]]:
        return self.store.tx(lambda t: list(t.RequestLog.select().order_by(t.RequestLog.id).dicts()))

    def open_holds(self) -> int:
        return self.store.tx(lambda t: t.Hold.select().count())

    def audit_ok(self) -> bool:
        return all(line.ok for line in self.store.tx(billing.audit))

    async def settled(self, n_logs: int, timeout: float = 5.0) -> None:
        """Wait until ``n_logs`` request logs exist and no hold is open (settlement is
        asynchronous after a stream's last byte)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if len(self.logs()) >= n_logs and self.open_holds() == 0:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {n_logs} settled requests, have {len(self.logs())} logs "
                                     f"and {self.open_holds()} open holds")
            await asyncio.sleep(0.02)


def write_config(tmp: Path, body: str) -> Path:
    path = tmp / "relaykit.yaml"
    db = tmp / "relaykit.db"
    path.write_text(f'database: {{url: "sqlite:///{db}"}}\n' + textwrap.dedent(body))
    return path


async def start_relay(config_path: Path, **app_kwargs: Any) -> Relay:
    settings = load_settings(config_path)
    assert not settings.errors, [p.render(str(config_path)) for p in settings.errors]
    store = Store(settings.database_url)
    app = create_app(settings, store, **app_kwargs)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = LaneSite(runner, host="127.0.0.1", port=0)  # as `relaykit serve` listens
    await site.start()
    host, port = runner.addresses[0][:2]
    return Relay(f"http://{host}:{port}", settings, store, config_path, runner)


async def stop_relay(relay: Relay) -> None:
    await relay.runner.cleanup()
