"""WAL checkpoints off the writer's path (SQLite only).

SQLite normally checkpoints inside the commit that pushes the WAL past 1 000 pages: that
commit then copies pages into the database file and syncs it, and every request waiting
on the writer waits too (a p99 of milliseconds, measured with scripts/bench).  The
writer's connection turns automatic checkpoints off (writer.py), and this thread runs a
PASSIVE checkpoint on its own connection shortly after writes happened.  PASSIVE never
blocks the writer or readers; a checkpoint that finds another process's checkpoint
running is simply tried again at the next tick.

Under steady load a PASSIVE checkpoint never catches the writer (new frames arrive while
it copies), and SQLite only rewinds the WAL once everything in it was copied, so the
file would grow without end.  When it passes ``RESTART_FRAMES``, a RESTART checkpoint
makes the writer wait for the little that is left and rewinds the WAL: a short pause of
the writer thread every few tens of megabytes instead of one every four.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import peewee as pw

log = logging.getLogger("relaykit.store.checkpoint")

INTERVAL = 0.25
RESTART_FRAMES = 8192  # 32 MB of 4 KB pages


class Checkpointer:
    def __init__(self, db: pw.Database, commits: Callable[[], int], *, interval: float = INTERVAL) -> None:
        self._db = db
        self._commits = commits
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relaykit-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        seen = self._commits()
        try:
            while not self._stop.wait(self._interval):
                now = self._commits()
                if now == seen:
                    continue
                seen = now
                self.checkpoint()
            self.checkpoint()  # what the writer committed last goes into the database file too
        finally:
            if not self._db.is_closed():
                self._db.close()

    def checkpoint(self) -> None:
        try:
            self._db.connect(reuse_if_open=True)
            row = self._db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if row is not None and int(row[1]) > RESTART_FRAMES:
                self._db.execute_sql("PRAGMA wal_checkpoint(RESTART)")
        except pw.OperationalError as exc:  # busy: another process checkpoints; try at the next tick
            log.debug("checkpoint skipped: %s", exc)
