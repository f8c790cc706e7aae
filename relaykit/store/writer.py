"""The one writer thread (ARCHITECTURE "Storage and money").

peewee is synchronous, so no query may run on the event loop.  Every write is queued here
as a function of the tables; the thread takes whatever is queued (up to ``max_batch``),
runs each operation in its own savepoint inside one transaction, commits once (group
commit), and then resolves each operation's future.  A failing operation rolls back only
its savepoint; a failing commit fails the whole batch, and the callers see
``ServiceUnavailable`` (fail closed: no hold, no forwarding).  On PostgreSQL a batch chosen
as a deadlock victim (another instance's batch locked the same rows in the other order)
is rolled back whole and run again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import RelayError, ServiceUnavailable
from .pg import retryable
from .tables import Tables

T = TypeVar("T")
log = logging.getLogger("relaykit.store.writer")

_STOP = object()
DEADLOCK_RETRIES = 5


class Writer:
    def __init__(self, tables: Tables, *, max_batch: int = 512) -> None:
        self._t = tables
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_batch = max_batch
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.operations = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relaykit-writer", daemon=True)
            self._thread.start()

    def submit(self, fn: Callable[[Tables], T]) -> concurrent.futures.Future[T]:
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._thread is None:
            fut.set_exception(ServiceUnavailable("The database writer is not running."))
            return fut
        self._q.put((fn, fut))
        return fut

    async def run(self, fn: Callable[[Tables], T]) -> T:
        return await asyncio.wrap_future(self.submit(fn))

    def call(self, fn: Callable[[Tables], T], timeout: float | None = 30.0) -> T:
        """Blocking form for threads other than the event loop."""
        return self.submit(fn).result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Commit everything queued so far, then end the thread."""
        if self._thread is None:
            return
        self._q.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        db = self._t.db
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    return
                batch = [item]
                stop_after = False
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop_after = True
                        break
                    batch.append(nxt)
                self._commit(batch)
                if stop_after:
                    return
        finally:
            if not db.is_closed():
                db.close()

    def _commit(self, batch: list[tuple[Callable[[Tables], Any], concurrent.futures.Future[Any]]]) -> None:
        db = self._t.db
        # an operation whose caller gave up before it ran is skipped; once running, it can no
        # longer be cancelled, so resolving its future below cannot fail
        batch = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        if not batch:
            return
        outcomes: list[tuple[concurrent.futures.Future[Any], Any, BaseException | None]] = []
        tries = 0
        try:
            while True:
                tries += 1
                outcomes = []
                try:
                    with db.atomic():
                        for fn, fut in batch:
                            try:
                                with db.atomic():
                                    result = fn(self._t)
                                outcomes.append((fut, result, None))
                            except RelayError as exc:
                                outcomes.append((fut, None, exc))
                            except Exception as exc:  # an operation's bug must not sink the batch
                                if retryable(exc):
                                    raise  # the whole transaction must go to free its locks
                                log.exception("write operation failed")
                                outcomes.append((fut, None, exc))
                    break
                except Exception as exc:
                    # PostgreSQL with several instances: two batches locked rows in opposite
                    # orders and this one was chosen to die.  Nothing of it was committed and
                    # the operations are functions of the tables, so the batch runs again.
                    if not retryable(exc) or tries >= DEADLOCK_RETRIES:
                        raise
                    log.warning("write batch of %d operations hit a deadlock; retrying", len(batch))
        except Exception:
            log.exception("commit of %d operations failed", len(batch))
            if not db.is_closed():
                db.close()
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(ServiceUnavailable("The database is unavailable; nothing was charged."))
            return
        self.commits += 1
        self.operations += len(batch)
        for fut, result, exc in outcomes:
            if exc is None:
                fut.set_result(result)
            else:
                fut.set_exception(exc)
