"""The Store facade: one database, its tables, the writer thread and the account cache.

The server uses ``write`` (queued to the writer thread) and ``read`` (a worker thread);
the CLI, which has no event loop, uses ``tx`` directly.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

import peewee as pw

from ..errors import ServiceUnavailable
from .cache import AccountCache
from .checkpoint import Checkpointer
from .db import open_database
from .migrations import migrate
from .pg import advisory_lock
from .tables import Tables, build_tables
from .writer import Writer

T = TypeVar("T")


class Store:
    def __init__(self, url: str, *, cache_interval: float = 0.5) -> None:
        self.url = url
        self.db = open_database(url)
        self.t: Tables = build_tables(self.db)
        self.writer = Writer(self.t)
        self.cache = AccountCache(self.t, interval=cache_interval)
        self.checkpointer = (Checkpointer(self.db, lambda: self.writer.commits)
                             if isinstance(self.db, pw.SqliteDatabase) else None)
        if self.checkpointer is not None:
            self.writer.rewind_due = self.checkpointer.rewind_due
        # set with Redis, so that a change made here reaches the other instances at once
        self.wake_cache_on_write = False
        close_all = getattr(self.db, "close_all", None)
        if close_all is not None:  # pooled PostgreSQL: a CLI command's connections close with its store
            weakref.finalize(self, close_all)

    def migrate(self) -> list[str]:
        try:
            with self.db.connection_context(), advisory_lock(self.db, "migrate"):
                return migrate(self.t)  # instances starting together migrate one at a time
        except pw.OperationalError as exc:
            raise ServiceUnavailable(f"The database at {self._where()} cannot be opened: {exc}.") from None

    def _where(self) -> str:
        return self.url.split("@")[-1] if "@" in self.url else self.url

    def start(self) -> None:
        self.writer.start()
        self.cache.start()
        if self.checkpointer is not None:
            self.checkpointer.start()

    def stop(self) -> None:
        self.cache.stop()
        self.writer.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.close()

    def close(self) -> None:
        """Close pooled connections (PostgreSQL); the next query opens a fresh one."""
        close_all = getattr(self.db, "close_all", None)
        if close_all is not None:
            close_all()

    async def write(self, fn: Callable[[Tables], T]) -> T:
        return await self.submit_write(fn)

    def submit_write(self, fn: Callable[[Tables], T]) -> asyncio.Future[T]:
        """Queue ``fn`` for the writer now; await the future when its result is needed
        (the pipeline builds the upstream request meanwhile)."""
        fut = self.writer.submit_async(fn)
        if self.wake_cache_on_write:
            # did it change an account? the cache checks the counter as soon as it is written
            fut.add_done_callback(lambda _: self.cache.wake())
        return fut

    async def read(self, fn: Callable[[Tables], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._read_sync, fn)

    def _read_sync(self, fn: Callable[[Tables], T]) -> T:
        with self.db.connection_context():
            return fn(self.t)

    def tx(self, fn: Callable[[Tables], T]) -> T:
        """Run ``fn`` in one transaction on this thread (CLI and scripts)."""
        with self.db.connection_context():
            with self.db.atomic():
                return fn(self.t)
