"""Helpers for the CLI tests (imported by the test modules): a real config file and SQLite database in a tmp dir, the CLI
run in-process (fast) or as a real subprocess (the entry point an operator runs).

Nothing here fakes the store: rows are written with the same repository functions the
relay pipeline uses (``place_hold`` + ``settle_hold`` with a request-log row).
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from relaykit.store import accounts, billing
from relaykit.store.store import Store

REPO = Path(__file__).resolve().parents[2]
QUOTA_PER_USD = 1_000_000  # not the default, so the CLI must read it from the config

CONFIG_TEMPLATE = """\
server:
  host: 127.0.0.1
  port: 0
database:
  url: "sqlite:///{db}"
billing:
  quota_per_usd: {qpu}
logs:
  retention_days: 2
groups:
  default: {{ratio: 1.0, description: "everyone"}}
  vip: {{ratio: 0.5, description: "half price"}}
models:
  mock-gpt: {{input: 2.5, output: 10}}
  mock-mini: {{ratio: 0.075, completion_ratio: 4}}
  mock-fixed: {{per_call: 0.04}}
channels:
  - name: local-mock
    type: mock
    models: [mock-gpt, mock-mini, mock-fixed]
    groups: [default, vip]
"""


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return orjson.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@dataclass
class Env:
    """One operator's installation: a config file and its SQLite database."""

    dir: Path
    config: Path
    db: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    def store(self) -> Store:
        s = Store(self.url)
        s.migrate()
        return s

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL directly on the database file (as an operator with sqlite3 would)."""
        with contextlib.closing(sqlite3.connect(self.db)) as conn:
            rows = conn.execute(query, params).fetchall()
            conn.commit()
            return rows


def subprocess_env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.pop("RELAYKIT_CONFIG", None)
    e.pop("OPENAI_API_KEY", None)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e["COLUMNS"] = "200"
    e.update(extra)
    return e


def run_relaykit(*args: str, cwd: Path, timeout: float = 30, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m relaykit ARGS...` as a separate process."""
    return subprocess.run([sys.executable, "-m", "relaykit", *map(str, args)], cwd=cwd, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=timeout, check=False)


def assert_one_line_error(stderr: str, *needles: str) -> str:
    """The CLI's error contract: exactly one line, `relaykit: <sentence>`, no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines!r}"
    assert lines[0].startswith("relaykit: "), lines[0]
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


class LineReader:
    """Collects a child process's stdout lines in a thread so the test can wait with a deadline."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        self._t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._t.start()

    def _pump(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pred: Callable[[str], bool], timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching line within {timeout}s; got {self.lines!r}")
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"the process closed stdout first; got {self.lines!r}")
            self.lines.append(line)
            if pred(line):
                return line


@contextlib.contextmanager
def spawn(*args: str, cwd: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], LineReader]]:
    proc = subprocess.Popen([sys.executable, "-m", "relaykit", *map(str, args)], cwd=cwd,
                            env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, LineReader(proc.stdout)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def user_id(store: Store, name: str) -> int:
    return int(store.tx(lambda t: t.User.get(t.User.name == name).id))


def add_log(store: Store, *, user: str, model: str = "mock-gpt", channel: str = "local-mock",
            token_id: int | None = None, token_name: str = "", prompt: int = 10, completion: int = 5,
            quota: int = 100, status: int = 200, estimated: bool = False, created_at: float | None = None,
            stream: bool = False) -> str:
    """One settled request, exactly as the pipeline records it: hold, then settle with a log row."""
    request_id = uuid.uuid4().hex
    uid = user_id(store, user)

    def op(t: Any) -> None:
        ticket = billing.place_hold(t, request_id=request_id, user_id=uid, token_id=token_id, token_limited=False,
                                    amount=quota, model=model)
        row = {
            "request_id": request_id, "user_id": uid, "token_id": token_id, "token_name": token_name,
            "model": model, "upstream_model": model, "channel": channel, "dialect": "openai",
            "prompt_tokens": prompt, "completion_tokens": completion, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "quota": quota, "latency_ms": 12, "first_byte_ms": 5, "stream": stream,
            "estimated": estimated, "status": status, "error": "", "attempts": "[]", "client_ip": "127.0.0.1",
            "created_at": time.time() if created_at is None else created_at,
        }
        billing.settle_hold(t, ticket, quota, row)

    store.tx(op)
    return request_id


def seed_user(store: Store, name: str, usd: float = 0, group: str = "default") -> int:
    """A customer with a balance, made with the repositories directly (fast test setup;
    the `user` commands themselves are tested in test_cli_users.py)."""

    def op(t: Any) -> int:
        user = accounts.create_user(t, name, group=group)
        if usd:
            billing.topup(t, name, int(usd * QUOTA_PER_USD), note="test setup")
        return int(user.id)

    return store.tx(op)


def seed_token(store: Store, user: str, name: str) -> int:
    def op(t: Any) -> int:
        row, _key = accounts.create_token(t, user_id=accounts.user_row(t, user).id, name=name, quota=None,
                                          expires_at=None, group=None, models=[], ips=[], rpm=None, tpm=None)
        return int(row.id)

    return store.tx(op)
