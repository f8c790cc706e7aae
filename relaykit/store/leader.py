"""Which process runs the cluster's background jobs (log pruning, stale-hold recovery, task
polling, channel probes): exactly one at a time, whatever the number of instances.

On PostgreSQL the leader holds an advisory lock on a connection of its own
(``pg.SessionLock``); if that process dies or loses its connection the lock goes with the
session and another instance takes it at its next try.  On SQLite every process is on one
machine, so an exclusive ``flock`` on a file beside the database does the same for
``serve --workers N`` or a second ``serve`` on the same file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Protocol

from .db import sqlite_path
from .pg import SessionLock, is_postgres_url


class Leader(Protocol):
    @property
    def held(self) -> bool: ...

    def try_hold(self) -> bool: ...

    def release(self) -> None: ...


class FileLeader:
    """Leadership through an exclusive, non-blocking ``flock`` (released when the process ends)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def try_hold(self) -> bool:
        if self._file is not None:
            return True
        try:
            import fcntl
        except ImportError:  # not a Unix: one process per database is the only supported setup
            self._file = open(os.devnull, "rb")  # noqa: SIM115 - held for the process's life
            return True
        f = open(self._path, "ab")  # noqa: SIM115 - held while leader
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._file = f
        return True

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


class AlwaysLeader:
    """For an in-memory SQLite database: there is only this process."""

    held = True

    def try_hold(self) -> bool:
        return True

    def release(self) -> None:
        pass


def open_leader(url: str) -> Leader:
    if is_postgres_url(url):
        return SessionLock(url, "jobs")
    path = sqlite_path(url)
    if path is None or str(path) == ":memory:":
        return AlwaysLeader()
    return FileLeader(path.with_name(path.name + ".jobs.lock"))
