"""Everything a handler needs, built once per app and stored on it (no module globals)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..relay.auth import Authenticator
from ..relay.pipeline import Pipeline
from ..relay.select import Router
from ..relay.upstream import UpstreamPool
from ..settings import Settings
from ..store.store import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    pool: UpstreamPool
    router: Router
    auth: Authenticator
    pipeline: Pipeline

    @classmethod
    def build(cls, settings: Settings, store: Store, *, rng: random.Random | None = None,
              clock: Callable[[], float] = time.time) -> Services:
        pool = UpstreamPool()
        router = Router(settings.channels, rng, disabled=lambda: store.cache.snapshot.channels_disabled)
        return cls(settings, store, pool, router, Authenticator(store.cache, clock),
                   Pipeline(settings, store, pool, router, clock=clock))

    def reload(self, settings: Settings) -> None:
        """Swap in new settings (SIGHUP): a new router, the same pool, store and caches.
        Requests in flight keep the objects they started with."""
        store = self.store
        router = Router(settings.channels, disabled=lambda: store.cache.snapshot.channels_disabled)
        self.settings = settings
        self.router = router
        self.pipeline.settings = settings
        self.pipeline.router = router


SERVICES: web.AppKey[Services] = web.AppKey("relaykit.services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]

