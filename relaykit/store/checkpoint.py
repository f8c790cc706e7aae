"""WAL checkpoints off the writer's path (SQLite only).

SQLite normally checkpoints inside the commit that pushes the WAL past 1 000 pages: that
commit copies pages into the database file and syncs it while every request waiting on
the writer waits too (a p99 of milliseconds, measured with scripts/bench).  The writer's
connection turns automatic checkpoints off (writer.py), and this thread runs a PASSIVE
checkpoint on its own connection shortly after writes happened.  PASSIVE never blocks
the writer or readers; one that finds another process's checkpoint running is simply
tried again at the next tick.

One thing this thread cannot do: rewind the WAL.  SQLite starts the WAL file over only
when a write begins right after a checkpoint copied every frame, and under steady load
the writer has always begun its next transaction while this thread was still copying
(measured: the WAL grew without end).  So the writer itself runs a small PASSIVE
checkpoint between two batches once this thread has seen ``REWIND_FRAMES`` frames
(writer.py): it copies only what arrived since this thread's last pass, and its next
write rewinds the WAL.  A RESTART checkpoint from here would do the same by making the
writer wait on a lock, which SQLite's busy handler turns into sleeps of whole
milliseconds (measured: 15 ms stalls, an open-loop p99 of 8-169 ms).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import peewee as pw

log = logging.getLogger("relaykit.store.checkpoint")

INTERVAL = 0.1  # frequent small checkpoints: measured kinder to the tail than one a second
REWIND_FRAMES = 16384  # 16 MB of 1 KB pages (store/db.py); measured: 4 096 or 65 536 no better


class Checkpointer:
    def __init__(self, db: pw.Database, commits: Callable[[], int], *, interval: float | None = None) -> None:
        self._db = db
        self._commits = commits
        self._interval = INTERVAL if interval is None else interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        self.wal_frames = 0  # frames in the WAL at the last pass (read by the writer thread)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relaykit-checkpoint", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def rewind_due(self) -> bool:
        """For the writer thread: is the WAL long enough to rewind between two batches?"""
        if self.wal_frames < REWIND_FRAMES:
            return False
        self.wal_frames = 0
        return True

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
            if row is not None:
                self.wal_frames = int(row[1])
        except pw.OperationalError as exc:  # busy: another process checkpoints; try at the next tick
            log.debug("checkpoint skipped: %s", exc)
