"""PostgreSQL specifics: the pooled psycopg 3 database, advisory locks, and the errors worth
retrying.

Several relaykit instances share one PostgreSQL.  The repositories are the same as on
SQLite; what differs lives here:

* ``open_postgres`` builds a pooled peewee database on psycopg 3 (peewee 4 speaks psycopg 3
  natively: ``prefer_psycopg3=True`` on the core ``PostgresqlDatabase``), so the worker
  threads that read and the one writer thread each reuse a connection instead of paying
  a TCP connect and authentication per query.
* ``advisory_lock`` serialises work that must not run twice at once across instances
  (schema migrations at start).  ``SessionLock`` holds a lock on its own connection for
  as long as an instance is the one that runs the cluster's background jobs.
* ``retryable`` tells deadlocks and serialisation failures apart from other errors: the
  writer thread retries a whole batch on them, since two instances' batches may lock the
  same customers' rows in opposite orders.

psycopg is an optional dependency (``pip install 'relaykit[postgres]'``); it is imported
only when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import peewee

from ..errors import ConfigError

log = logging.getLogger("relaykit.store.pg")

# SQLSTATEs after which a transaction can simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def is_postgres_url(url: str) -> bool:
    return url.split("://", 1)[0] in ("postgres", "postgresql")


def is_postgres(db: peewee.Database) -> bool:
    return isinstance(db, peewee.PostgresqlDatabase)


def conninfo(url: str) -> str:
    """The URL in the spelling libpq documents (``postgresql://``)."""
    return "postgresql://" + url.split("://", 1)[1]


def redact(url: str) -> str:
    """The URL without its password, for messages and /health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _require_driver() -> None:
    try:
        import psycopg
        from psycopg.pq import TransactionStatus
        from psycopg.types.json import Json, Jsonb
    except ImportError:
        raise ConfigError("database.url names PostgreSQL, but its driver is not installed; "
                          "run: pip install 'relaykit[postgres]'.") from None
    # relaykit/__init__.py imported peewee with psycopg hidden (memory and start-up time for
    # SQLite); these are the names peewee's psycopg 3 support reads from its module
    if getattr(peewee, "psycopg", None) is None:
        peewee.psycopg = psycopg  # type: ignore[attr-defined]
        peewee.TransactionStatus = TransactionStatus  # type: ignore[attr-defined]
        peewee.Json_pg3 = Json  # type: ignore[attr-defined]
        peewee.Jsonb_pg3 = Jsonb  # type: ignore[attr-defined]


def open_postgres(url: str, *, max_connections: int = 32) -> peewee.Database:
    """An unconnected, pooled peewee database on psycopg 3 for ``url``."""
    _require_driver()
    from playhouse.pool import PooledPostgresqlDatabase

    # peewee hands a URL-shaped database name to psycopg as its conninfo.  Connections idle
    # for five minutes are recycled; a thread waits up to 10 s for a free one.
    db: peewee.Database = PooledPostgresqlDatabase(
        conninfo(url), prefer_psycopg3=True, max_connections=max_connections, stale_timeout=300, timeout=10,
        connect_timeout=5, application_name="relaykit")
    return db


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(f"relaykit:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(db: peewee.Database, name: str) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock for the block (a no-op on SQLite).

    The caller must be inside ``db.connection_context()``: the lock belongs to that
    connection, so lock and unlock run on it.
    """
    if not is_postgres(db):
        yield
        return
    key = lock_key(name)
    db.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
    try:
        yield
    finally:
        db.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))


def retryable(exc: BaseException) -> bool:
    """True for a deadlock or serialisation failure, however peewee wrapped it."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if getattr(e, "sqlstate", None) in RETRYABLE_SQLSTATES:
            return True
        todo.extend([getattr(e, "__cause__", None), getattr(e, "__context__", None), getattr(e, "orig", None)])
        todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
    return False


class SessionLock:
    """A named advisory lock held on a connection of its own, for leadership.

    ``try_hold`` takes the lock if nobody has it and answers whether this process holds it
    now.  It also notices a dropped connection (PostgreSQL restarted, network cut): the
    lock went with the session, so leadership is lost and taken again later.  Calls block;
    run them in a worker thread.
    """

    def __init__(self, url: str, name: str) -> None:
        self._url = conninfo(url)
        self._key = lock_key(name)
        self._conn: Any = None
        self._held = False
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    def try_hold(self) -> bool:
        import psycopg

        with self._mutex:
            try:
                if self._conn is None or self._conn.closed:
                    self._held = False
                    self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5,
                                                 application_name="relaykit-leader")
                if self._held:
                    self._conn.execute("SELECT 1")
                else:
                    row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
                    self._held = bool(row and row[0])
            except psycopg.Error as exc:
                if self._held:
                    log.warning("lost the cluster job lock: %s", exc)
                self._held = False
                self._close()
            return self._held

    def release(self) -> None:
        with self._mutex:
            if self._held and self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            self._held = False
            self._close()  # ending the session would release the lock too, only later

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
