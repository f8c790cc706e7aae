"""`relaykit serve --workers N`: several processes on one port and one SQLite database,
money exact across them (issue 9)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from relaykit.store import accounts, billing
from relaykit.store.store import Store

from .harness import write_config

CONFIG = """
server: {drain_seconds: 3}
groups: {default: {ratio: 1}}
models: {fixed: {per_call: 0.01}}
channels:
  - {name: local, type: mock, models: [fixed]}
"""


def start_serve(config: Path, workers: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "relaykit", "serve", "--config", str(config), "--port", "0",
                             "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"serve did not start: {err}")


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


async def test_two_workers_share_the_port_and_the_money(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    store = Store(f"sqlite:///{tmp_path}/relaykit.db")
    store.migrate()

    def setup(t):  # type: ignore[no-untyped-def]
        u = accounts.create_user(t, "wendy")
        billing.topup(t, "wendy", 30 * 5000)  # covers exactly 30 calls of $0.01
        return accounts.create_token(t, user_id=u.id, name="w", quota=None, expires_at=None, group=None,
                                     models=[], ips=[], rpm=None, tpm=None)[1]
    key = store.tx(setup)
    proc, url = start_serve(config, 2)
    try:
        assert len(children_of(proc.pid)) == 2
        body = {"model": "fixed", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as http:
            async def one() -> int:
                async with http.post(url + "/v1/chat/completions", json=body,
                                     headers={"Authorization": f"Bearer {key}"}) as r:
                    await r.read()
                    return r.status
            statuses = await asyncio.gather(*(one() for _ in range(100)))
        assert statuses.count(200) == 30 and statuses.count(402) == 70
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert store.tx(lambda t: accounts.user_row(t, "wendy").balance) == 0
    assert all(line.ok for line in store.tx(billing.audit))
    assert store.tx(lambda t: t.Hold.select().count()) == 0
    assert store.tx(lambda t: t.Ledger.select().where(t.Ledger.kind == "charge").count()) == 30
