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

SQLITE_PRAGMAS = (
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
