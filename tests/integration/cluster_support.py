"""PostgreSQL and Redis for the cluster and ops tests: one place decides skip or fail.

``require(service, problem)`` skips a test whose service is absent, with the reason, or
fails it when ``RELAYKIT_REQUIRE_SERVICES=1`` (``.ci/run`` sets it, so CI cannot go green
by skipping).  The fixtures built on it give every test its own PostgreSQL database
(created on the ``postgres`` database, dropped at teardown) and its own Redis key prefix
(its keys deleted at teardown); ``private_redis`` starts a Redis of the test's own on a
free port, which the test may stop and start again (the machine's Redis on 6379 is never
stopped).

Where the services live: ``RELAYKIT_TEST_PG`` (default
``postgresql://root@127.0.0.1:5432/postgres``) and ``RELAYKIT_TEST_REDIS`` (default
``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_ADMIN = os.environ.get("RELAYKIT_TEST_PG", "postgresql://root@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RELAYKIT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require(service: str, problem: str) -> None:
    """Skip (or, under RELAYKIT_REQUIRE_SERVICES=1, fail) because ``service`` is unusable."""
    message = f"{service} is not available: {problem}"
    if os.environ.get("RELAYKIT_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (RELAYKIT_REQUIRE_SERVICES=1: this test must run)", pytrace=False)
    pytest.skip(message)


def _pg_admin_connect() -> object:
    try:
        import psycopg
    except ImportError:
        require("PostgreSQL", "the psycopg driver is not installed (pip install -e '.[dev]')")
        raise
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        require("PostgreSQL", f"cannot connect to {PG_ADMIN}: {str(exc).strip().splitlines()[0]}")
        raise


def _db_url(name: str) -> str:
    base, _, _ = PG_ADMIN.rpartition("/")
    return f"{base}/{name}"


@dataclass
class PgDatabases:
    """Creates databases for one test and drops them all at its end."""

    names: list[str]

    def new(self) -> str:
        name = f"relaykit_test_{uuid.uuid4().hex[:12]}"
        conn = _pg_admin_connect()
        try:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
        finally:
            conn.close()  # type: ignore[attr-defined]
        self.names.append(name)
        return _db_url(name)

    def drop_all(self) -> None:
        if not self.names:
            return
        conn = _pg_admin_connect()
        try:
            for name in self.names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
        finally:
            conn.close()  # type: ignore[attr-defined]


@pytest.fixture
def pg_databases() -> Iterator[PgDatabases]:
    _pg_admin_connect().close()  # type: ignore[attr-defined]  # skip/fail before the test body
    dbs = PgDatabases([])
    yield dbs
    dbs.drop_all()


@pytest.fixture
def pg_url(pg_databases: PgDatabases) -> str:
    """A fresh, empty PostgreSQL database of this test's own."""
    return pg_databases.new()


def _redis_ping(url: str) -> None:
    try:
        import redis
    except ImportError:
        require("Redis", "the redis client is not installed (pip install -e '.[dev]')")
        raise
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        require("Redis", f"cannot reach {url}: {exc}")


@dataclass(frozen=True)
class RedisTarget:
    url: str
    prefix: str


@pytest.fixture
def redis_target() -> Iterator[RedisTarget]:
    """The machine's Redis with a key prefix of this test's own; its keys are deleted after."""
    _redis_ping(REDIS_URL)
    target = RedisTarget(REDIS_URL, f"rktest-{uuid.uuid4().hex[:10]}")
    yield target
    import redis
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{target.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own (no persistence), to stop and start at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--daemonize", "yes", "--dir", str(self.workdir),
                        "--pidfile", str(self.workdir / "redis.pid"),
                        "--logfile", str(self.workdir / "redis.log")], check=True, timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._ping():
                return
            time.sleep(0.02)
        raise AssertionError(f"the private redis-server on port {self.port} did not start")

    def stop(self) -> None:
        """Shut down this Redis (only this one: it is addressed by its own port)."""
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True,
                       timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self._ping():
            time.sleep(0.02)

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        require("Redis", "redis-server and redis-cli are not on PATH")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(workdir)
    server.start()
    yield server
    server.stop()
