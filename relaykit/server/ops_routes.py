"""The operator's endpoints: ``GET /health`` and ``GET /metrics`` (Prometheus), and the
middleware that counts every HTTP answer and writes the JSON access log.

``/health`` answers 200 while the database answers (``degraded`` when Redis is configured
but unreachable: limits are per instance then) and 503 when it does not, so a load
balancer can take the instance out.  With ``ops.token`` set, ``/metrics`` and the details
of ``/health`` need ``Authorization: Bearer <token>``; the status alone stays public for
load balancers.  Neither ever shows a key, a token, a password or a customer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import Any

import orjson
from aiohttp import web

from .. import __version__
from ..relay.metrics import CONTENT_TYPE
from ..store.pg import is_postgres_url
from .cluster import CLUSTER, Cluster
from .middleware import Handler
from .services import SERVICES

access_log = logging.getLogger("relaykit.access")
DB_CHECK_TIMEOUT = 2.0


def register(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.middlewares.insert(0, observe)  # outermost: sees the final status of every answer


def _authorised(request: web.Request, c: Cluster) -> bool:
    token = c.settings.ops.token
    if not token:
        return not c.settings.ops.locked
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def _database(c: Cluster) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(c.store.read(lambda t: t.db.execute_sql("SELECT 1").fetchone()), DB_CHECK_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure means the database is not usable
        return {"ok": False, "kind": _db_kind(c), "error": type(exc).__name__}
    return {"ok": True, "kind": _db_kind(c), "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "writer": c.store.writer._thread is not None}  # noqa: SLF001


def _db_kind(c: Cluster) -> str:
    return "postgresql" if is_postgres_url(c.settings.database_url) else "sqlite"


def _channels(request: web.Request) -> list[dict[str, Any]]:
    svc = request.app[SERVICES]
    health = svc.pipeline.health.snapshot()
    disabled = svc.store.cache.snapshot.channels_disabled
    out = []
    for ch in svc.settings.channels:
        h = health.get(ch.name, {})
        state = "disabled" if (not ch.enabled or ch.name in disabled) else (
            "ejected" if h.get("ejected_for") else "cooling" if h.get("cooling_for") else "ok")
        out.append({"name": ch.name, "type": ch.type, "state": state,
                    "failures": h.get("failures", 0), "ejected_for": round(float(h.get("ejected_for", 0)), 1),
                    "cooling_for": round(float(h.get("cooling_for", 0)), 1)})
    return out


async def health(request: web.Request) -> web.Response:
    c = request.app[CLUSTER]
    db = await _database(c)
    redis = c.shared.status() if c.shared is not None else {"configured": False, "ok": None,
                                                             "limits": "per-instance"}
    status = "down" if not db["ok"] else ("degraded" if redis["configured"] and not redis["ok"] else "ok")
    body: dict[str, Any] = {"status": status}
    if _authorised(request, c):
        body.update({"version": __version__, "instance": c.instance, "uptime_s": round(time.time() - c.started, 1),
                     "database": db, "redis": redis, "jobs": c.jobs.status(), "channels": _channels(request)})
    return web.Response(body=orjson.dumps(body), status=503 if status == "down" else 200,
                        content_type="application/json", headers={"Cache-Control": "no-store"})


async def metrics(request: web.Request) -> web.Response:
    c = request.app[CLUSTER]
    if not _authorised(request, c):
        return web.Response(status=401, text="metrics need the ops token (Authorization: Bearer ...)\n",
                            headers={"WWW-Authenticate": "Bearer"})
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(None, c.metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the answer by route template (never the raw path: it may carry a model or a
    key) and write one JSON access-log line when ``ops.access_log`` is on."""
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away
        raise
    finally:
        elapsed = time.perf_counter() - started
        c = request.app.get(CLUSTER)
        if c is not None:
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            c.metrics.answered(route, request.method, status, elapsed)
            if c.settings.ops.access_log:
                _log_access(request, route, status, elapsed, response)


def _log_access(request: web.Request, route: str, status: int, elapsed: float,
                response: web.StreamResponse | None) -> None:
    log_access(request.method, request.path, route, status, elapsed, request.remote or "",
               getattr(response, "body_length", 0) if response is not None else 0,
               response.headers.get("X-Request-Id", "") if response is not None else "",
               request.headers.get("User-Agent", ""))


def log_access(method: str, path: str, route: str, status: int, elapsed: float, remote: str, nbytes: int,
               request_id: str, user_agent: str) -> None:
    """One JSON line per answer (also written by server/fastlane.py for its routes)."""
    # the query string is left out on purpose: Gemini clients may put their key in ?key=
    line = {"ts": round(time.time(), 3), "method": method, "path": path, "route": route,
            "status": status, "ms": round(elapsed * 1000, 2), "remote": remote, "bytes": nbytes,
            "request_id": request_id, "user_agent": user_agent[:200]}
    access_log.info(orjson.dumps(line).decode())
