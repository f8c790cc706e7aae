"""``notifyHook`` callbacks: when a task finishes, POST it (in its own API's shape) to the
URL the client gave, through the outbound guard (public addresses only, no redirects).

Delivery runs in the background with a few retries on network errors and 5xx; the
outcome is kept on the task (``hook_status``: sent, failed, refused) for
``relaykit tasks show``.  A refused address is never retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import aiohttp
import orjson

from ...dialects import tasks as shapes
from ...store import tasks as repo
from ...store.store import Store
from ...store.tasks import TaskRecord
from .netguard import Blocked, BlockedAddress, Outbound
from .service import write

log = logging.getLogger("relaykit.tasks")
ATTEMPTS = 3


def payload(rec: TaskRecord) -> dict[str, Any]:
    view = rec.view()
    if rec.platform == "midjourney":
        return shapes.mj_task(view)
    if rec.platform == "suno":
        return shapes.suno_task(view)
    return shapes.video_generation(view)


class Notifier:
    def __init__(self, store: Store, outbound: Outbound, *, retry_delay: Callable[[int], float] = lambda n: 2.0 ** n
                 ) -> None:
        self.store = store
        self.outbound = outbound
        self.retry_delay = retry_delay
        self._pending: set[asyncio.Task[None]] = set()

    def notify(self, rec: TaskRecord) -> None:
        if not rec.notify_hook:
            return
        job = asyncio.create_task(self._deliver(rec), name=f"relaykit-notify-{rec.task_id}")
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def _deliver(self, rec: TaskRecord) -> None:
        body = orjson.dumps(payload(rec))
        outcome = "failed"
        for attempt in range(ATTEMPTS):
            try:
                status = await self.outbound.post_json(rec.notify_hook, body)
            except Blocked:
                outcome = "refused"
                break
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, BlockedAddress):
                    outcome = "refused"
                    break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            else:
                if status < 300:
                    outcome = "sent"
                    break
                if status < 500 and status != 429:
                    break
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(self.retry_delay(attempt))
        if outcome != "sent":
            log.info("notifyHook of task %s: %s", rec.task_id, outcome)
        try:
            await write(self.store, partial(repo.set_hook_status, task_id=rec.task_id, status=outcome))
        except Exception:
            log.exception("could not record the notifyHook outcome of task %s", rec.task_id)

    async def drain(self, timeout: float) -> None:
        """Let deliveries in flight finish (up to ``timeout``), then cancel the rest."""
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=timeout)
        for job in list(self._pending):
            job.cancel()
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
