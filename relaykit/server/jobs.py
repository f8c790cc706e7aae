"""Background jobs that run on one instance of the cluster at a time.

Every instance runs a ``Jobs`` loop; each tick it asks its ``Leader`` (an advisory lock on
PostgreSQL, a file lock on SQLite: store/leader.py) whether it is the one, and only the
leader runs the jobs that are due.  When the leader dies, another instance takes the lock
at its next tick and carries on.  A job is a coroutine function; one that fails is logged
and tried again at its next turn.

Other parts of relaykit add their periodic work with ``Jobs.add`` (task polling, channel
probes), so none of it runs twice because two instances are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..store.leader import Leader

log = logging.getLogger("relaykit.jobs")


@dataclass
class Job:
    name: str
    every: float
    run: Callable[[], Awaitable[Any]]
    due: float = 0.0
    runs: int = 0
    last_run: float | None = None   # wall clock, for /health
    last_error: str = ""


class Jobs:
    def __init__(self, leader: Leader, *, tick: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.leader = leader
        self.tick = tick
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._task: asyncio.Task[None] | None = None
        self.is_leader = False

    def add(self, name: str, every: float, run: Callable[[], Awaitable[Any]], *, first_after: float = 0.0) -> None:
        """Run ``run()`` every ``every`` seconds on the leader (first after ``first_after``)."""
        self._jobs[name] = Job(name, every, run, due=self._clock() + first_after)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="relaykit-jobs")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.get_running_loop().run_in_executor(None, self.leader.release)
        self.is_leader = False

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            held = await loop.run_in_executor(None, self.leader.try_hold)
            if held != self.is_leader:
                (log.info if held else log.warning)(
                    "this instance %s the cluster's background jobs", "now runs" if held else "no longer runs")
                self.is_leader = held
            if held:
                await self.run_due()
            await asyncio.sleep(self.tick)

    async def run_due(self) -> None:
        now = self._clock()
        for job in list(self._jobs.values()):
            if job.due > now:
                continue
            job.due = now + job.every
            try:
                await job.run()
                job.last_error = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a failing job must not stop the others
                log.exception("background job %s failed", job.name)
                job.last_error = str(exc)[:200]
            job.runs += 1
            job.last_run = time.time()

    def status(self) -> dict[str, Any]:
        return {"leader": self.is_leader,
                "jobs": {j.name: {"every_seconds": j.every, "runs": j.runs, "last_run": j.last_run,
                                  "last_error": j.last_error} for j in self._jobs.values()}}
