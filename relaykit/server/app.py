"""The aiohttp application factory.

``create_app`` is handed everything it needs (settings, store), so tests build the app
without the CLI.  The app's lifecycle starts the store (migrations, recovery of holds left
open by a crash, writer thread, caches) and closes upstream sessions and the writer on
shutdown, after in-flight requests have finished.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

from aiohttp import web

from ..store import billing
from ..store.pg import is_postgres_url
from ..store.store import Store
from ..settings import Settings
from . import api_routes, media_routes, openai_routes, task_routes, usage_routes, vendor_routes
from . import cluster, ops_routes
from .middleware import errors
from .services import SERVICES, Services

log = logging.getLogger("relaykit.server")
MB = 1024 * 1024


def create_app(settings: Settings, store: Store, *, rng: random.Random | None = None,
               clock: Callable[[], float] = time.time, recover_holds: bool = True,
               jobs_tick: float = 5.0) -> web.Application:
    app = web.Application(client_max_size=int(settings.server.max_body_mb * MB), middlewares=[errors],
                          handler_args={"max_field_size": 16 * 1024, "max_line_size": 16 * 1024})
    app[SERVICES] = Services.build(settings, store, rng=rng, clock=clock)

    r = app.router
    r.add_get("/", openai_routes.root)
    r.add_post("/v1/chat/completions", openai_routes.chat_completions)
    r.add_post("/v1/responses", vendor_routes.responses)
    r.add_post("/v1/responses/input_tokens", vendor_routes.responses_input_tokens)
    r.add_post("/v1/messages", vendor_routes.messages)
    r.add_post("/v1/messages/count_tokens", vendor_routes.count_tokens)
    r.add_get("/v1/models", vendor_routes.list_models)
    r.add_get("/v1/models/{target}", vendor_routes.get_model)
    r.add_post("/v1/models/{target}", media_routes.gemini_action)  # embeddings there, the rest in vendor_routes
    r.add_get("/v1beta/models", vendor_routes.gemini_list_models)
    r.add_get("/v1beta/models/{target}", vendor_routes.gemini_get_model)
    r.add_post("/v1beta/models/{target}", media_routes.gemini_action)
    media_routes.register(app)
    usage_routes.register(app)
    api_routes.register(app, settings, store, clock=clock)
    task_routes.register(app)

    ops_routes.register(app)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        svc = app[SERVICES]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, store.migrate)
        if recover_holds:
            # SQLite: this process owns the database, every open hold is a crash's leftover.
            # PostgreSQL: other instances may be serving, so only holds too old to be alive.
            older = settings.stale_hold_seconds if is_postgres_url(settings.database_url) else None
            released = await loop.run_in_executor(None, store.tx, partial(billing.release_stale_holds,
                                                                          older_than=older))
            if released:
                log.warning("released %d holds left open by an earlier run", released)
        store.start()
        try:
            yield
        finally:
            await svc.pool.close()
            await loop.run_in_executor(None, store.stop)

    app.cleanup_ctx.append(lifecycle)
    app.cleanup_ctx.append(task_routes.follow_tasks)  # after the store starts, stopped before it stops
    # after the store's lifecycle: Redis, the cluster's jobs (log pruning...) and the metrics
    cluster.attach(app, settings, store, jobs_tick=jobs_tick)
    return app

