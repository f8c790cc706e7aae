"""What several relaykit instances share through Redis: one connection, its health, and
pub/sub messages between instances (ARCHITECTURE "Storage and money").

Redis is optional and never holds money.  Three things use it: the rate-limit windows
(relay/redis_limits.py), cache invalidation (a change committed on one instance wakes
every other instance's account cache at once instead of at its next poll) and channel
health (an ejection or a Retry-After cool-down seen by one instance applies on all).

When Redis cannot be reached every user of this object falls back to what one instance
can do alone: per-instance limits, polling the change counter, local channel health.  The
change of state is logged once each way and shown in ``/health``; a watchdog pings Redis
every second while it is down and re-subscribes when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .health import Health, HealthSettings

log = logging.getLogger("relaykit.shared")

Handler = Callable[[dict[str, Any]], None]

# A Redis call on the request path that takes longer than this falls back to per-instance
# behaviour for that request; a refused connection, or several timeouts in a row, mark Redis
# down until the watchdog's ping succeeds again.  (Generous: a busy event loop delays replies.)
OP_TIMEOUT = 2.0
TIMEOUTS_BEFORE_DOWN = 3
POOL_SIZE = 32
WATCH_EVERY = 1.0


class RedisUnavailable(Exception):
    """Redis is down or too slow; the caller falls back to per-instance behaviour."""


class Shared:
    """One Redis connection shared by the limiter, the cache invalidation and the health."""

    def __init__(self, url: str, prefix: str = "relaykit", *, instance: str | None = None) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:
            from ..errors import ConfigError
            raise ConfigError("redis.url is set, but the Redis client is not installed; "
                              "run: pip install 'relaykit[redis]'.") from None
        self.url = url
        self.prefix = prefix
        self.instance = instance or uuid.uuid4().hex[:12]
        self._client: Any = None
        self._handlers: dict[str, list[Handler]] = {}
        self._on_up: list[Callable[[], None]] = []
        self._up = False
        self._since = time.time()
        self._error = "not started"
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: set[asyncio.Task[Any]] = set()
        self._timeouts = 0
        self._resubscribe = asyncio.Event()

    # ------------------------------------------------------------------ state

    @property
    def up(self) -> bool:
        return self._up

    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def status(self) -> dict[str, Any]:
        from ..store.pg import redact
        return {"configured": True, "ok": self._up, "url": redact(self.url), "prefix": self.prefix,
                "since": round(self._since, 3), "error": "" if self._up else self._error,
                "limits": "shared" if self._up else "per-instance"}

    def mark_down(self, exc: BaseException | str) -> None:
        reason = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        if self._up:
            log.warning("Redis is unreachable (%s): rate limits are per instance until it is back", reason)
            self._since = time.time()
        self._up = False
        self._error = reason[:200]

    def _mark_up(self) -> None:
        if not self._up:
            if self._error != "not started":
                log.warning("Redis is back: rate limits are shared again")
            self._up = True
            self._since = time.time()
            self._error = ""
            self._resubscribe.set()
            for fn in self._on_up:
                fn()

    def on_up(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (on the loop) each time Redis comes back (also the first time)."""
        self._on_up.append(fn)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        import redis
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # A bounded pool (a burst of requests queues for a connection instead of opening
        # hundreds), and one immediate retry on a fresh connection: after Redis restarts, the
        # pooled connections are dead, and that alone must not send a request to the fallback.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=OP_TIMEOUT, socket_timeout=OP_TIMEOUT,
            socket_connect_timeout=OP_TIMEOUT)
        self._client = aioredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 1),
                                      retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        try:
            await self._client.ping()
            self._mark_up()
        except Exception as exc:  # noqa: BLE001 - any failure to reach Redis means "down"
            self.mark_down(exc)
            log.warning("Redis at %s is unreachable at start (%s): rate limits are per instance",
                        self.status()["url"], self._error)
        self._tasks = [asyncio.create_task(self._watch(), name="relaykit-redis-watch"),
                       asyncio.create_task(self._listen(), name="relaykit-redis-listen")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pending:
            await asyncio.wait(self._pending, timeout=1.0)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose(close_connection_pool=True)  # the pool was handed in
        self._up = False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                await self._client.ping()
                if not self._up:
                    # connections from before the outage are dead: drop them all, so the
                    # first calls after it do not fail on them (and fall back once more)
                    await self._client.connection_pool.disconnect()
                    await self._client.ping()
            except Exception as exc:  # noqa: BLE001
                self.mark_down(exc)
            else:
                self._mark_up()

    # ------------------------------------------------------------------ calls

    async def call(self, fn: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``fn(client)``; raise RedisUnavailable (and mark Redis down) on any failure."""
        if not self._up or self._client is None:
            raise RedisUnavailable(self._error)
        import redis
        try:
            result = await asyncio.wait_for(fn(self._client), OP_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError, redis.TimeoutError) as exc:
            self._timeouts += 1
            if self._timeouts >= TIMEOUTS_BEFORE_DOWN:
                self.mark_down(f"{self._timeouts} calls in a row took longer than {OP_TIMEOUT} s")
            raise RedisUnavailable(str(exc) or "timeout") from None
        except redis.ResponseError:
            raise  # a bug in a script, not an outage
        except Exception as exc:  # noqa: BLE001 - connection refused or reset, and the like
            self.mark_down(exc)
            raise RedisUnavailable(str(exc)) from None
        self._timeouts = 0
        return result

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Fire and forget (a release, a publish): keep a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # ------------------------------------------------------------------ pub/sub

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(message)`` on the loop for every message other instances publish."""
        self._handlers.setdefault(topic, []).append(handler)
        self._resubscribe.set()

    def publish(self, topic: str, message: dict[str, Any]) -> None:
        """Send ``message`` to the other instances; dropped silently while Redis is down."""
        if not self._up:
            return
        payload = orjson.dumps({**message, "from": self.instance})

        async def send() -> None:
            with contextlib.suppress(RedisUnavailable):
                await self.call(lambda r: r.publish(self.key("bus", topic), payload))

        self.spawn(send())

    def publish_threadsafe(self, loop: asyncio.AbstractEventLoop, topic: str, message: dict[str, Any]) -> None:
        """``publish`` from another thread (the account cache's refresher)."""
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            loop.call_soon_threadsafe(self.publish, topic, message)

    async def _listen(self) -> None:
        """Keep one subscription to every topic; re-subscribe after Redis comes back."""
        while True:
            await self._resubscribe.wait()
            self._resubscribe.clear()
            if not self._handlers or not self._up:
                continue
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*(self.key("bus", t) for t in self._handlers))
                while not self._resubscribe.is_set():
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is not None:
                        self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the watchdog brings it back
                self.mark_down(exc)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.shield(pubsub.aclose())

    def _dispatch(self, msg: dict[str, Any]) -> None:
        channel = msg.get("channel")
        topic = (channel.decode() if isinstance(channel, bytes) else str(channel)).rsplit(":", 1)[-1]
        try:
            body = orjson.loads(msg.get("data") or b"{}")
        except orjson.JSONDecodeError:
            return
        if not isinstance(body, dict) or body.get("from") == self.instance:
            return
        for handler in self._handlers.get(topic, ()):
            try:
                handler(body)
            except Exception:  # a bad message must not stop the subscription
                log.exception("handling a %s message failed", topic)


class SharedHealth(Health):
    """Channel health whose verdicts travel: an ejection, a Retry-After cool-down or a
    recovery seen here is published, and the other instances apply it to their own copy.

    Each instance still counts failures itself (a flaky network on one host should not eject
    a channel everywhere); what is shared is the decision, with its remaining duration, so
    the instances' monotonic clocks never have to agree.
    """

    def __init__(self, settings: HealthSettings, clock: Callable[[], float], shared: Shared) -> None:
        super().__init__(settings, clock)
        self._shared = shared
        shared.subscribe("health", self._apply)

    def failure(self, name: str) -> bool:
        ejected = super().failure(name)
        if ejected:
            st = self._of(name)
            self._shared.publish("health", {"channel": name, "eject": st.ejected_until - self.clock(),
                                            "ejections": st.ejections})
        return ejected

    def cool_down(self, name: str, seconds: float) -> None:
        super().cool_down(name, seconds)
        self._shared.publish("health", {"channel": name, "cool": max(0.0, seconds)})

    def success(self, name: str) -> None:
        st = self._state.get(name)
        was_out = st is not None and st.ejections > 0
        super().success(name)
        if was_out:
            self._shared.publish("health", {"channel": name, "ok": True})

    def _apply(self, msg: dict[str, Any]) -> None:
        name = msg.get("channel")
        if not isinstance(name, str) or not name:
            return
        st = self._of(name)
        now = self.clock()
        if isinstance(msg.get("eject"), (int, float)):
            st.ejected_until = max(st.ejected_until, now + min(float(msg["eject"]), self.settings.eject_max_seconds))
            st.ejections = max(st.ejections, int(msg.get("ejections") or 1))
        elif isinstance(msg.get("cool"), (int, float)):
            st.cooldown_until = max(st.cooldown_until, now + min(float(msg["cool"]), 3600.0))
        elif msg.get("ok") is True:
            st.failures = st.ejections = 0
            st.ejected_until = 0.0
