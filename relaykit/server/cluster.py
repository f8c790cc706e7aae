"""Wiring for running several instances: Redis (shared limits, cache invalidation, channel
health), the background jobs that run once per cluster, and the metrics.

``attach`` is called by the app factory after the services are built.  Without
``redis.url`` nothing here touches the network: limits stay in memory, caches poll, and the
jobs still take the leader lock, so ``serve --workers N`` on SQLite prunes logs once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web

from ..relay.metrics import Metrics
from ..relay.redis_limits import SharedLimiter
from ..relay.shared import Shared, SharedHealth
from ..settings import Settings
from ..store import billing
from ..store import logs as logs_repo
from ..store.leader import open_leader
from ..store.pg import is_postgres_url
from ..store.store import Store
from .jobs import Jobs
from .services import SERVICES

log = logging.getLogger("relaykit.cluster")

PRUNE_EVERY_SECONDS = 3600.0
STALE_HOLDS_EVERY_SECONDS = 60.0


@dataclass
class Cluster:
    settings: Settings
    store: Store
    metrics: Metrics
    jobs: Jobs
    shared: Shared | None = None
    limiter: SharedLimiter | None = None
    instance: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)


CLUSTER: web.AppKey[Cluster] = web.AppKey("relaykit.cluster", Cluster)


def attach(app: web.Application, settings: Settings, store: Store, *, jobs_tick: float = 5.0) -> Cluster:
    svc = app[SERVICES]
    cluster = Cluster(settings, store, Metrics(), Jobs(open_leader(settings.database_url), tick=jobs_tick))
    pipeline = svc.pipeline
    pipeline.metrics = cluster.metrics
    if settings.redis_url:
        shared = Shared(settings.redis_url, settings.redis_prefix, instance=cluster.instance)
        cluster.shared = shared
        cluster.limiter = SharedLimiter(settings.limits, shared, pipeline.monotonic)
        pipeline.limiter = cluster.limiter
        old = pipeline.health
        pipeline.health = SharedHealth(old.settings, old.clock, shared)
        # a change committed here wakes this instance's cache, whose reload tells the others
        store.wake_cache_on_write = True
        shared.subscribe("changes", lambda _msg: store.cache.wake())
        shared.on_up(store.cache.wake)  # messages may have been missed while Redis was away
    _add_jobs(cluster)
    _gauges(cluster)
    if settings.ops.access_log:
        _access_log_to_stdout()
    app[CLUSTER] = cluster
    app.cleanup_ctx.append(_lifecycle)
    return cluster


def _add_jobs(c: Cluster) -> None:
    settings, store = c.settings, c.store
    seconds = settings.logs.retention_days * 86400

    async def prune_logs() -> None:
        """Request logs past ``logs.retention_days`` (never money rows), in batches."""
        while await store.write(lambda t: logs_repo.prune(t, seconds)):
            await asyncio.sleep(0)

    if seconds > 0:
        c.jobs.add("prune-logs", PRUNE_EVERY_SECONDS, prune_logs)

    if is_postgres_url(settings.database_url):
        async def release_stale_holds() -> None:
            """Holds of requests that cannot still be running (their instance died)."""
            n = await store.write(lambda t: billing.release_stale_holds(t, older_than=settings.stale_hold_seconds))
            if n:
                log.warning("released %d holds older than %d minutes", n, settings.stale_hold_seconds // 60)

        c.jobs.add("release-stale-holds", STALE_HOLDS_EVERY_SECONDS, release_stale_holds)


def _gauges(c: Cluster) -> None:
    m = c.metrics
    m.gauge("relaykit_redis_up", "1 when Redis is reachable (shared limits), 0 when not or not configured.",
            lambda: 1.0 if c.shared is not None and c.shared.up else 0.0)
    m.gauge("relaykit_jobs_leader", "1 on the instance that runs the cluster's background jobs.",
            lambda: 1.0 if c.jobs.is_leader else 0.0)
    m.gauge("relaykit_writer_commits", "Transactions committed by the writer thread (group commits).",
            lambda: float(c.store.writer.commits))
    m.gauge("relaykit_writer_operations", "Write operations committed by the writer thread.",
            lambda: float(c.store.writer.operations))


def _access_log_to_stdout() -> None:
    """``ops.access_log``: the JSON lines go to stdout (journald, docker logs) unformatted."""
    logger = logging.getLogger("relaykit.access")
    if not any(getattr(h, "relaykit_access", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.relaykit_access = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    c = app[CLUSTER]
    loop = asyncio.get_running_loop()
    if c.shared is not None:
        shared = c.shared
        await shared.start()
        c.store.cache.add_listener(lambda version: shared.publish_threadsafe(loop, "changes", {"version": version}))
    c.jobs.start()
    try:
        yield
    finally:
        await c.jobs.stop()
        if c.shared is not None:
            await c.shared.stop()
