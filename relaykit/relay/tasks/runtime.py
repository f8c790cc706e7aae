"""Everything the task APIs need at run time, built once per app: the submit/read service,
the poller, the notifier and the outbound guard they share.  ``start``/``stop`` run in
the app's lifecycle after the store has started and before it stops."""

from __future__ import annotations

import time
from collections.abc import Callable

from .netguard import Outbound
from .notify import Notifier
from .poller import TaskPoller
from .service import Context, TaskRelay

DRAIN_SECONDS = 5.0


class TaskRuntime:
    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.time) -> None:
        self.outbound = Outbound(lambda: ctx.settings.tasks.hooks_allow_private)
        self.relay = TaskRelay(ctx, self.outbound, clock=clock)
        self.notifier = Notifier(ctx.store, self.outbound)
        self.poller = TaskPoller(ctx, self.relay.http, self.notifier, clock=clock)

    def start(self) -> None:
        self.poller.start()

    async def stop(self) -> None:
        await self.poller.stop()
        await self.notifier.drain(DRAIN_SECONDS)
        await self.outbound.close()
