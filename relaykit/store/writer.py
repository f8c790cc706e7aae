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

import peewee as pw

from ..errors import RelayError, ServiceUnavailable
from .hotsql import is_flat
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
        self._bare = isinstance(tables.db, pw.SqliteDatabase)  # flat operations skip peewee's transaction
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.operations = 0
        # set by the Store on SQLite (store/checkpoint.py): True when the WAL should be
        # rewound by a small checkpoint on this thread, between two batches
        self.rewind_due: Callable[[], bool] | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="relaykit-writer", daemon=True)
            self._thread.start()

    def submit(self, fn: Callable[[Tables], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn`` from any thread; the result arrives on a concurrent future."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._thread is None:
            fut.set_exception(ServiceUnavailable("The database writer is not running."))
            return fut
        self._q.put((fn, fut, None, False))
        return fut

    def submit_async(self, fn: Callable[[Tables], T], *, must_run: bool = False) -> asyncio.Future[T]:
        """Queue ``fn`` from the event loop; the result arrives on an asyncio future.

        The hot path's form: the writer resolves all of a batch's futures of one loop
        with a single ``call_soon_threadsafe``, instead of a wake-up per operation.
        Cancelling the future before the writer reaches the operation skips it, unless
        ``must_run``: a settlement runs whether or not its caller is still waiting (what
        ``asyncio.shield`` gave, without its extra future and loop iteration per request).
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            fut.set_exception(ServiceUnavailable("The database writer is not running."))
            return fut
        self._q.put((fn, fut, loop, must_run))
        return fut

    async def run(self, fn: Callable[[Tables], T]) -> T:
        return await self.submit_async(fn)

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
        if isinstance(db, pw.SqliteDatabase):
            # checkpoints run in store/checkpoint.py, not inside one of this thread's commits
            db.connect(reuse_if_open=True)
            db.execute_sql("PRAGMA wal_autocheckpoint=0")
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
                self._deliver(self._commit(batch))
                if stop_after:
                    return
                if self.rewind_due is not None and self.rewind_due():
                    self._rewind(db)
        finally:
            if not db.is_closed():
                db.close()

    @staticmethod
    def _rewind(db: Any) -> None:
        """Copy what the checkpointer has not yet, so that the next write starts the WAL over."""
        try:
            db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except pw.OperationalError as exc:
            log.debug("WAL rewind skipped: %s", exc)

    def _commit(self, batch: list[_Item]) -> list[_Outcome]:
        db = self._t.db
        # an operation whose caller gave up before it ran is skipped; once running, it can no
        # longer be cancelled, so resolving its future below cannot fail
        batch = [item for item in batch if item[3] or _claim(item[1])]
        if not batch:
            return []
        outcomes: list[_Outcome] = []
        tries = 0
        try:
            while True:
                tries += 1
                try:
                    outcomes = self._transaction(db, batch)
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
            failed = ServiceUnavailable("The database is unavailable; nothing was charged.")
            return [(fut, loop, None, failed) for _, fut, loop, _ in batch]
        self.commits += 1
        self.operations += len(batch)
        return outcomes

    def _transaction(self, db: Any, batch: list[_Item]) -> list[_Outcome]:
        """Run the batch in one transaction and commit it.

        A lone operation needs no savepoint: when it fails, the whole (one-operation)
        transaction rolls back, which is the same thing and two statements cheaper.
        Several operations each run inside a raw SAVEPOINT (peewee's savepoint objects
        cost more than the statements), so a failing one undoes only itself.
        """
        if len(batch) == 1:
            fn, fut, loop, _ = batch[0]
            if self._bare and is_flat(fn):
                return [self._bare_transaction(db, fn, fut, loop)]
            try:
                with db.atomic():
                    return [(fut, loop, fn(self._t), None)]
            except Exception as exc:
                return [_failed(exc, fut, loop)]
        outcomes: list[_Outcome] = []
        with db.atomic():
            conn = db.connection()
            for fn, fut, loop, _ in batch:
                conn.execute("SAVEPOINT relaykit_op")
                try:
                    result = fn(self._t)
                except Exception as exc:
                    outcomes.append(_failed(exc, fut, loop))  # a deadlock raises: the whole transaction goes
                    conn.execute("ROLLBACK TO SAVEPOINT relaykit_op")
                    conn.execute("RELEASE SAVEPOINT relaykit_op")
                    continue
                conn.execute("RELEASE SAVEPOINT relaykit_op")
                outcomes.append((fut, loop, result, None))
        return outcomes

    def _bare_transaction(self, db: Any, fn: Callable[[Tables], Any], fut: Any,
                          loop: asyncio.AbstractEventLoop | None) -> _Outcome:
        """One flat operation (store/hotsql.py) in its own transaction, straight on the driver.

        The same statements peewee's ``atomic()`` sends (IMMEDIATE, as store/db.py sets, so
        two processes never deadlock on a lock upgrade), without its Python bookkeeping:
        about 15 us per transaction in a tight loop here, two transactions per relayed request.
        """
        conn = db.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(self._t)
        except BaseException as exc:
            conn.execute("ROLLBACK")
            if not isinstance(exc, Exception):
                raise
            return _failed(exc, fut, loop)
        conn.execute("COMMIT")
        return (fut, loop, result, None)

    @staticmethod
    def _deliver(outcomes: list[_Outcome]) -> None:
        per_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for outcome in outcomes:
            fut, loop, result, exc = outcome
            if loop is None:
                if exc is None:
                    fut.set_result(result)
                else:
                    fut.set_exception(exc)
            else:
                per_loop.setdefault(loop, []).append(outcome)
        for loop, items in per_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the loop has closed: nobody waits for these any more
                pass


# (operation, its future, the loop to resolve it on or None, must it run though cancelled)
_Item = tuple[Callable[[Tables], Any], Any, "asyncio.AbstractEventLoop | None", bool]
_Outcome = tuple[Any, "asyncio.AbstractEventLoop | None", Any, "BaseException | None"]


def _failed(exc: Exception, fut: Any, loop: asyncio.AbstractEventLoop | None) -> _Outcome:
    """The outcome of an operation that raised (call it inside the ``except``).

    A retryable error (a PostgreSQL deadlock) is raised again: the whole transaction must go
    to free its locks and the batch runs again.  A RelayError is the operation's answer
    (insufficient quota...); anything else is a bug, logged, that must not sink the others.
    """
    if retryable(exc):
        raise exc
    if not isinstance(exc, RelayError):
        log.exception("write operation failed")
    return (fut, loop, None, exc)


def _claim(fut: Any) -> bool:
    if isinstance(fut, concurrent.futures.Future):
        return fut.set_running_or_notify_cancel()
    return not fut.cancelled()  # asyncio: a cancel racing with this check only drops the result


def _resolve(items: list[_Outcome]) -> None:
    """On the event loop: hand each operation its result."""
    for fut, _, result, exc in items:
        if fut.done():  # cancelled by its caller meanwhile
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)
