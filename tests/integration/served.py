"""`relaykit serve` as a real subprocess, the way an operator runs it, for the lifecycle
and secrets tests: seed a database with the repositories the CLI uses, start
``python -m relaykit serve --config X --port 0``, read its ``listening on`` line, talk to
it over HTTP, signal it, and read its stdout/stderr and its SQLite file afterwards.

Everything waits with deadlines on events (a line printed, a process exit, a port
refusing connections); nothing sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relaykit.store import accounts, billing
from relaykit.store.store import Store
from tests.cli.cli_support import REPO, subprocess_env

LISTENING = re.compile(r"relaykit listening on (http://[\w.\-]+:\d+)")


def seed(db_url: str, users: dict[str, int]) -> dict[str, str]:
    """Create each user with ``quota`` units of credit and one API token; return the keys."""
    store = Store(db_url)
    store.migrate()

    def make(t: Any) -> dict[str, str]:
        keys = {}
        for name, quota in users.items():
            user = accounts.create_user(t, name)
            if quota:
                billing.topup(t, name, quota, note="test setup")
            _, keys[name] = accounts.create_token(t, user_id=user.id, name=f"{name}-app", quota=None,
                                                  expires_at=None, group=None, models=[], ips=[], rpm=None,
                                                  tpm=None)
        return keys

    try:
        return store.tx(make)
    finally:
        store.db.close()


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Read the SQLite file as an operator would (sqlite3), whether or not a relay runs."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn:
        return conn.execute(sql, params).fetchall()


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    url: str = ""
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _pumps: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    async def _pump(self, stream: asyncio.StreamReader, into: list[str]) -> None:
        while True:
            line = await stream.readline()
            if not line:
                break
            into.append(line.decode("utf-8", "replace"))
            self._changed.set()
        self._changed.set()

    async def wait_output(self, pred: Callable[[Served], bool], timeout: float, what: str) -> None:
        """Wait until ``pred(self)`` holds (re-checked whenever a line arrives)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(self):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{what}: not seen within {timeout}s\nstdout: {self.stdout}\n"
                                     f"stderr: {self.stderr}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for p in self._pumps:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(p, 5)


async def start_serve(config: Path, *, timeout: float = 30.0, **env: str) -> Served:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relaykit", "serve", "--config", str(config), "--port", "0",
        cwd=config.parent, env=subprocess_env(RELAYKIT_DATA_DIR=str(config.parent / "data"), **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    served = Served(proc)
    assert proc.stdout is not None and proc.stderr is not None
    served._pumps = [asyncio.create_task(served._pump(proc.stdout, served.out)),
                     asyncio.create_task(served._pump(proc.stderr, served.err))]

    def ready(s: Served) -> bool:
        if s.proc.returncode is not None:
            raise AssertionError(f"relaykit serve exited with {s.proc.returncode}: {s.stderr}")
        return any(LISTENING.search(line) for line in s.out)

    try:
        await served.wait_output(ready, timeout, "the 'listening on' line")
    except BaseException:
        await served.close()
        raise
    m = next(m for m in map(LISTENING.search, served.out) if m)
    served.url = m.group(1)
    return served


@contextlib.asynccontextmanager
async def serving(config: Path, **env: str) -> AsyncIterator[Served]:
    served = await start_serve(config, **env)
    try:
        yield served
    finally:
        await served.close()


async def run_cli(*args: str, cwd: Path, timeout: float = 60.0) -> tuple[int, str, str]:
    """`python -m relaykit ARGS...` as a separate process (without blocking the loop the
    fake upstreams run in)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relaykit", *args, cwd=cwd,
        env=subprocess_env(RELAYKIT_DATA_DIR=str(cwd / "data")),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def refuses_connections(host: str, port: int, timeout: float) -> float:
    """Poll until ``host:port`` refuses a TCP connection; return how long that took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return loop.time() - start
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if loop.time() - start > timeout:
            raise AssertionError(f"{host}:{port} still accepts connections {timeout}s later")
        await asyncio.sleep(0.01)


__all__ = ["REPO", "Served", "query", "refuses_connections", "run_cli", "seed", "serving", "start_serve"]
