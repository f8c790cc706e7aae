"""The background poller: follows every open task to its end.

Each round (every ``tasks.poll_seconds``):

1. gives up on tasks past their deadline, and on tasks an upstream never confirmed
   (relaykit stopped between the hold and the upstream's answer): each is closed as
   FAILURE and its hold released, in one transaction;
2. claims the tasks whose next poll is due (a conditional UPDATE, so several instances
   never poll one task together) and asks their upstreams, a few at a time;
3. records what it heard.  A poll that fails waits longer each time (doubling up to
   ``tasks.poll_max_seconds``); an upstream that forgot a task three times running fails it.

State lives only in the database: after a restart the first round finds every open task
again (``follow_again`` makes them all due at once).  A task closed here triggers its
``notifyHook``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial

from ...errors import RelayError
from ...store import tasks as repo
from ...store.tasks import TaskRecord
from . import adapter_for
from .base import Http, TaskGone
from .notify import Notifier
from .service import Context, key_for, write

log = logging.getLogger("relaykit.tasks")

LEASE_SECONDS = 300.0        # a claimed task is not claimed again for this long (a poll in flight)
BATCH = 64                   # tasks claimed per round
CONCURRENCY = 16             # upstream polls in flight at once
GONE_LIMIT = 3               # "unknown task" answers in a row before the task fails
ORPHAN_SECONDS = 300.0       # a task still unconfirmed this long after submit is given up


class TaskPoller:
    def __init__(self, ctx: Context, http: Http, notifier: Notifier, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.http = http
        self.notifier = notifier
        self.clock = clock
        self.rounds = 0
        self._runner: asyncio.Task[None] | None = None
        self._limit = asyncio.Semaphore(CONCURRENCY)

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="relaykit-task-poller")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _run(self) -> None:
        try:
            again = await write(self.ctx.store, partial(repo.follow_again, now=self.clock()))
            if again:
                log.info("following %d open tasks again", again)
        except Exception:
            log.exception("could not resume open tasks; the next round will try")
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a task polling round failed")
            await asyncio.sleep(self.ctx.settings.tasks.poll_seconds)

    async def round(self) -> int:
        """One pass; returns how many tasks were polled."""
        self.rounds += 1
        now = self.clock()
        overdue = await self.ctx.store.read(partial(repo.overdue, now=now, orphaned_before=now - ORPHAN_SECONDS))
        for task_id, why in overdue:
            reason = ("The task did not finish before its deadline." if why == "deadline" else
                      "relaykit stopped before the upstream confirmed the task.")
            await self._close(task_id, reason, 504 if why == "deadline" else 502)
        claimed = await write(self.ctx.store, partial(repo.claim_due, now=now, lease=LEASE_SECONDS, limit=BATCH))
        if claimed:
            await asyncio.gather(*(self._poll(rec) for rec in claimed))
        return len(claimed)

    def _backoff(self, failures: int) -> float:
        s = self.ctx.settings.tasks
        wait: float = min(s.poll_seconds * 2.0 ** max(0, failures), s.poll_max_seconds)
        return self.clock() + wait

    async def _close(self, task_id: str, reason: str, status: int) -> None:
        closed = await write(self.ctx.store, partial(repo.finish, task_id=task_id, success=False, reason=reason,
                                                    now=self.clock(), log_status=status))
        if closed is not None:
            self.notifier.notify(closed)

    async def _failed(self, rec: TaskRecord, error: str) -> None:
        await write(self.ctx.store, partial(repo.poll_failed, task_id=rec.task_id, error=error,
                                           next_poll_at=self._backoff(rec.poll_failures + 1)))

    async def _poll(self, rec: TaskRecord) -> None:
        channel = self.ctx.settings.channel(rec.channel)
        adapter = adapter_for(channel.type, rec.platform) if channel is not None else None
        if channel is None or adapter is None:
            await self._failed(rec, f"the channel '{rec.channel}' is no longer configured")
            return
        async with self._limit:
            try:
                snap = await adapter.poll(self.http, channel, key_for(channel, rec.key_fp), rec)
            except TaskGone as exc:
                if rec.poll_failures + 1 >= GONE_LIMIT:
                    await self._close(rec.task_id, exc.message, 502)
                else:
                    await self._failed(rec, exc.message)
                return
            except RelayError as exc:
                await self._failed(rec, exc.message)
                return
            except Exception as exc:  # an adapter's bug must not stop the other tasks
                log.exception("polling task %s failed", rec.task_id)
                await self._failed(rec, f"relaykit could not read the upstream's answer ({type(exc).__name__})")
                return
        now = self.clock()
        closed = await write(self.ctx.store, partial(
            repo.record, task_id=rec.task_id, status=snap.status, progress=snap.progress, result=snap.result,
            fail_reason=snap.fail_reason, now=now, next_poll_at=now + self.ctx.settings.tasks.poll_seconds))
        if closed is not None:
            self.notifier.notify(closed)
