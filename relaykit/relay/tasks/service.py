"""Submitting tasks and reading them back (the handlers' one core call each).

Submit follows the chat pipeline's stage order: route (model exists, token may use it,
group, price) -> hold, written together with the task row -> forward to a channel,
trying the next one while the task has not been accepted -> record the upstream's id.
Whatever goes wrong after the hold (refusal, every channel down, cancellation) closes
the task and releases the hold in one transaction, so the customer pays nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from ...dialects.task_requests import TaskRequest
from ...domain import Channel, Price
from ...errors import InvalidRequest, ModelNotFound, NotFoundError, PermissionDenied, RelayError, UpstreamError
from ...settings import Settings
from ...store import tasks as repo
from ...store.store import Store
from ...store.tasks import TaskRecord
from ..auth import Caller, check_model
from ..health import fingerprint
from ..select import Router
from ..upstream import UpstreamPool
from . import adapter_for
from .base import Accepted, Http, Media, Submit
from .netguard import Outbound
from .pricing import price_for, task_quota

T = TypeVar("T")
MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


async def write(store: Store, fn: Callable[[Any], T]) -> T:
    """A write through the writer thread that a cancellation (shutdown, a client gone)
    cannot interrupt: the operation commits either way, and the writer's future is never
    cancelled under it."""
    return await asyncio.shield(store.write(fn))


class Context(Protocol):
    """What the task relay needs from the app (``server.services.Services`` has it all)."""

    settings: Settings
    store: Store
    pool: UpstreamPool
    router: Router


@dataclass(frozen=True, slots=True)
class Submitted:
    task: TaskRecord
    accepted: Accepted
    existing: bool = False   # the upstream already had this task (Midjourney code 21)


def new_task_id(platform: str, now: float) -> str:
    """Ids in each API's own style: Midjourney's are digits (milliseconds + random),
    Suno's UUIDs, videos' ``video_<hex>`` like OpenAI's."""
    if platform == "midjourney":
        return f"{int(now * 1000)}{secrets.randbelow(10**6):06d}"
    if platform == "suno":
        return str(uuid.uuid4())
    return "video_" + secrets.token_hex(16)


def key_for(channel: Channel, key_fp: str) -> str:
    """The channel key a task was submitted with (tasks belong to an upstream account)."""
    for key in channel.keys:
        if fingerprint(key) == key_fp:
            return key
    return channel.keys[0] if channel.keys else ""


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


class TaskRelay:
    def __init__(self, ctx: Context, outbound: Outbound, *, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.http = Http(ctx.pool)
        self.outbound = outbound
        self.clock = clock

    # ------------------------------------------------------------------ reading

    async def get(self, caller: Caller, task_id: str, platforms: tuple[str, ...]) -> TaskRecord:
        """The caller's own task; another customer's is answered exactly like an unknown id."""
        rec = await self.ctx.store.read(partial(repo.get, task_id=task_id, user_id=caller.user.id))
        if rec is None or rec.platform not in platforms:
            raise NotFoundError(f"There is no task '{task_id[:80]}'.", code="task_not_found")
        return rec

    async def many(self, caller: Caller, task_ids: list[str], platforms: tuple[str, ...]) -> list[TaskRecord]:
        recs = await self.ctx.store.read(partial(repo.many, task_ids=task_ids, user_id=caller.user.id))
        return [r for r in recs if r.platform in platforms]

    # ------------------------------------------------------------------ routing

    def _price(self, caller: Caller, req: TaskRequest) -> tuple[Price, Decimal]:
        check_model(caller, req.model)
        group = self.ctx.settings.groups.get(caller.group)
        if group is None:
            raise PermissionDenied(f"Your group '{caller.group}' is not configured on this relay.",
                                   code="group_not_found")
        price = price_for(self.ctx.settings.prices, req.model, req.extra.get("mode"))
        if price is None:
            raise InvalidRequest(f"The model '{req.model}' has no price configured, so it cannot be used; "
                                 "ask the operator to price it.", code="model_not_priced")
        return price, group.ratio

    def _plan(self, caller: Caller, req: TaskRequest) -> list[Channel]:
        router = self.ctx.router
        if not router.serves_anywhere(req.model):
            raise ModelNotFound(f"The model '{req.model}' does not exist or is not served by this relay.")
        plan = [c for c in router.plan(caller.group, req.model) if adapter_for(c.type, req.platform) is not None]
        if not plan:
            raise ModelNotFound(f"The model '{req.model}' is not available in your group.")
        return plan

    async def _parent(self, caller: Caller, req: TaskRequest) -> tuple[TaskRecord, Channel]:
        assert req.parent is not None
        parent = await self.get(caller, req.parent, (req.platform,))
        if parent.status != repo.SUCCESS:
            raise InvalidRequest(f"The task '{parent.task_id}' has not finished successfully, so it cannot be "
                                 "acted on.", code="task_not_finished")
        channel = self.ctx.settings.channel(parent.channel)
        if channel is None or not self.ctx.router.usable(channel) or adapter_for(channel.type, req.platform) is None:
            raise UpstreamError(f"The channel that ran task '{parent.task_id}' is not available now.", status=503)
        return parent, channel

    # ------------------------------------------------------------------ submitting

    async def submit(self, caller: Caller, req: TaskRequest, client_ip: str = "") -> Submitted:
        parent: TaskRecord | None = None
        if req.parent is not None:
            parent, channel = await self._parent(caller, req)
            plan = [channel]
        else:
            plan = self._plan(caller, req)
        price, ratio = self._price(caller, req)
        first = adapter_for(plan[0].type, req.platform)
        assert first is not None
        seconds = (req.seconds or first.default_seconds) if req.platform == "video" else 0
        quota = task_quota(price, ratio, self.ctx.settings.billing.quota_per_usd,
                           seconds if req.platform == "video" else None)
        now = self.clock()
        task_id = new_task_id(req.platform, now)
        echo: dict[str, Any] = {**req.echo, "seconds": str(seconds)} if req.platform == "video" else dict(req.echo)
        rec = await write(self.ctx.store, partial(
            repo.create, task_id=task_id, platform=req.platform, action=req.action, user_id=caller.user.id,
            token_id=caller.token.id, token_name=caller.token.name, token_limited=not caller.token.unlimited,
            model=req.model, quota=quota, request=echo, deadline_at=now + self.ctx.settings.tasks.deadline_seconds,
            now=now, parent_id=parent.task_id if parent else None, seconds=seconds, notify_hook=req.notify_hook,
            client_ip=client_ip))
        try:
            channel, key, accepted = await self._forward(plan, parent, req, task_id, seconds)
        except BaseException as exc:
            reason = exc.message if isinstance(exc, RelayError) else "relaykit could not submit the task."
            status = max(exc.status, 400) if isinstance(exc, RelayError) else 500  # a refused MJ submit is "200"
            await write(self.ctx.store, partial(
                repo.finish, task_id=task_id, success=False, reason=reason, now=self.clock(), log_status=status))
            raise
        if accepted.code == 21:
            same = await self.ctx.store.read(partial(repo.by_upstream, channel=channel.name,
                                                     upstream_id=accepted.upstream_id, user_id=caller.user.id))
            if same is not None:
                await write(self.ctx.store, partial(repo.finish, task_id=task_id, success=False, now=self.clock(),
                                                   reason=f"The upstream already runs this as task {same.task_id}."))
                return Submitted(same, accepted, existing=True)
        got = await write(self.ctx.store, partial(
            repo.accept, task_id=task_id, channel=channel.name, key_fp=fingerprint(key) if key else "",
            upstream_id=accepted.upstream_id, upstream_model=channel.upstream_model(req.model),
            status=accepted.status, next_poll_at=self.clock() + self.ctx.settings.tasks.poll_seconds))
        return Submitted(got or rec, accepted)

    async def _forward(self, plan: list[Channel], parent: TaskRecord | None, req: TaskRequest, task_id: str,
                       seconds: int) -> tuple[Channel, str, Accepted]:
        """The first channel that accepts the task; the next one after a connection error,
        a timeout, a 5xx or a full queue; never after the upstream refused the task itself."""
        last: RelayError | None = None
        dead = self.ctx.store.cache.snapshot.dead_keys
        for attempt, channel in enumerate(plan):
            if attempt >= self.ctx.settings.retry.max_attempts:
                break
            adapter = adapter_for(channel.type, req.platform)
            assert adapter is not None  # plans hold only channels with an adapter for the platform
            if parent is not None:
                key = key_for(channel, parent.key_fp)
            else:
                keys = self.ctx.router.keys_in_turn(channel, set(dead.get(channel.name, {})), fingerprint)
                key = keys[0] if keys else ""
            try:
                accepted = await adapter.submit(self.http, channel, key, Submit(
                    task_id, req.action, channel.upstream_model(req.model), req.upstream, seconds, parent))
            except RelayError as exc:
                if isinstance(exc, UpstreamError) or getattr(exc, "elsewhere", False):
                    last = exc
                    continue
                raise
            return channel, key, accepted
        raise last or UpstreamError("No upstream channel could take this task.")

    # ------------------------------------------------------------------ media

    async def media(self, rec: TaskRecord) -> aiohttp.ClientResponse:
        """Open the finished task's media (an image, a clip) for the client to download.

        Only the channel's own origin gets the channel's credentials; any other URL (a
        CDN the upstream named) is fetched through the outbound guard, without them.
        """
        channel = self.ctx.settings.channel(rec.channel)
        adapter = adapter_for(channel.type, rec.platform) if channel is not None else None
        media = adapter.media(channel, key_for(channel, rec.key_fp), rec) if adapter and channel else None
        if media is None or rec.status != repo.SUCCESS:
            raise NotFoundError("This task has nothing to download (yet).", code="media_not_found")
        assert channel is not None
        url, hops = media.url, 0
        while True:
            try:
                if same_origin(url, channel.base_url):
                    resp = await self.ctx.pool.session(url).get(url, headers=dict(media.headers),
                                                                timeout=MEDIA_TIMEOUT, allow_redirects=False)
                else:
                    resp = await self.outbound.get(url)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                raise UpstreamError("The media could not be fetched from where the upstream put it.") from None
            location = resp.headers.get("Location")
            if 300 <= resp.status < 400 and location and hops < 3:
                resp.release()
                url, hops = str(resp.url.join(URL(location))), hops + 1
                media = Media(url)  # credentials never follow a redirect
                continue
            if resp.status >= 400:
                resp.release()
                raise UpstreamError(f"The media host answered with status {resp.status}.", status=502)
            return resp

