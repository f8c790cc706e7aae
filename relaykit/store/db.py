"""Open the database named by ``database.url`` (SQLite by default, PostgreSQL for several
instances).  SQLite runs in WAL mode with a busy timeout and takes its write lock up front
(``BEGIN IMMEDIATE``) so two writers never deadlock on a lock upgrade.  PostgreSQL is
opened by store/pg.py (pooled connections on psycopg 3).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import peewee

from ..errors import ConfigError
from .pg import is_postgres_url, open_postgres

# 1 KB pages for a database this creates.  An existing file keeps its own size (SQLite
# changes it only by a VACUUM outside WAL mode); `relaykit db copy` to a new file moves an
# old database to small pages.
# Every page a commit touches goes to the WAL whole, and a request's two commits touch
# ~11 (measured: the hold 2; the settlement 8 - user, token, hold, the ledger and its two
# indexes, the log and its index - and more when a leaf splits), each changed by a few
# dozen bytes: with 4 KB pages the WAL, and the disk writes its checkpoints sync, took
# about 40 KB per request.  Measured with scripts/bench at concurrency 1 (3 000 req/s):
# checkpoints 2.8 ms instead of 6.3, the relayed p99 1.1 ms instead of 1.8; scans of the
# request log read ~15% slower, indexed reads no slower.  Must come before journal_mode.
SQLITE_PAGE_SIZE = 1024

SQLITE_PRAGMAS = (
    ("page_size", SQLITE_PAGE_SIZE),
    ("journal_mode", "wal"),
    ("busy_timeout", 10_000),
    ("synchronous", "normal"),  # safe against a process crash; FULL is an operator option
    ("foreign_keys", 1),
    ("cache_size", -16_000),
)


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(unquote(url[len("sqlite:///"):]))


def open_database(url: str) -> peewee.Database:
    """Return an (unconnected) peewee database for ``url``."""
    path = sqlite_path(url)
    if path is not None:
        if str(path) != ":memory:":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"The database directory {path.parent} cannot be created: {exc.strerror}.") from None
        return peewee.SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE",
                                     check_same_thread=False)
    if is_postgres_url(url):
        return open_postgres(url)  # pooled, psycopg 3: see store/pg.py
    raise ConfigError(f"database.url {url.split('://')[0]!r}:// is not supported; use sqlite:/// or postgresql://.")
