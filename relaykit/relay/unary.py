"""The pipeline for one-shot operations other than chat, and the running tab of a
realtime session.

    route: model exists -> token allow-list -> group plan -> price, in a basis the
           operation can meter -> the plan's channels whose type serves the operation
      -> hold (writer thread) for the largest cost the request can reach
      -> forward over channel-keys with failover (the chat pipeline's health, dead keys,
         rate limits and upstream-failure rules: one behaviour for every endpoint)
      -> answer (JSON read whole; speech audio streamed back chunk by chunk)
      -> settle the hold to the priced units + ledger entry + log row (one transaction)

What differs per operation (embeddings, rerank, images, audio) is an ``Operation``
(``relay.media_ops``): the bases it can meter, its hold estimate, the upstream request
for each wire, and how to read the reply.  A model whose price basis the operation
cannot meter is refused before anything is held or forwarded: never served free.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any, Protocol

import aiohttp
import orjson

from ..domain import Channel, Price, Usage
from ..errors import (InvalidRequest, ModelNotFound, PermissionDenied, RelayError,
                      UpstreamError)
from ..store import billing
from ..store.billing import HoldTicket
from . import pricing
from .auth import Caller, check_model
from .channels import ops_for
from .channels.ops import TITLES, OpRequest
from .health import fingerprint
from .limits import Lease
from .meter import estimate_tokens
from .pipeline import JsonReply, Pipeline, StreamReply
from .pricing import Units
from .upstream import Reply

log = logging.getLogger("relaykit.relay")

BASIS_WORDS = {"call": "per call", "image": "per image", "second": "per second of audio",
               "char": "per character", "token": "by tokens"}


@dataclass(slots=True)
class Answer:
    """A reply read whole: the client's body and what it consumed."""

    body: bytes
    content_type: str
    units: Units


@dataclass(slots=True)
class Streamed:
    """A reply streamed back as it arrives; ``units`` is asked when the stream ends."""

    chunks: AsyncIterator[bytes]
    content_type: str
    units: Callable[[], Units]


class Operation(Protocol):
    op: str                    # channels.ops name: "embeddings", "rerank", "images.generations", ...
    model: str                 # the client's model name
    bases: frozenset[str]      # the price bases this operation can meter
    log_dialect: str           # what the request log's ``dialect`` column says

    def estimate(self) -> Units: ...

    def prepare(self, failover: bool) -> None: ...

    def request(self, wire: str, model: str) -> OpRequest: ...

    async def answer(self, reply: Reply, wire: str, model: str) -> Answer | Streamed: ...

    def client_fault(self) -> RelayError | None: ...


@dataclass(slots=True)
class _Run:
    op: Operation
    caller: Caller
    client_ip: str
    request_id: str
    ticket: HoldTicket
    price: Price
    group_ratio: Decimal
    started: float
    lease: Lease
    channel: Channel | None = None
    upstream_model: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    first_byte_ms: int | None = None
    settled: bool = False


class UnaryPipeline:
    """Shares the chat pipeline's settings, router, health, limiter, store and pool, so a
    SIGHUP reload (which swaps them on the chat pipeline) reaches these endpoints too."""

    def __init__(self, chat: Pipeline) -> None:
        self.chat = chat

    # ------------------------------------------------------------------ routing

    def route(self, op: str, model: str, caller: Caller, bases: frozenset[str]) -> tuple[list[Channel], Price,
                                                                                          Decimal]:
        chat = self.chat
        if not chat.router.serves_anywhere(model):
            raise ModelNotFound(f"The model '{model}' does not exist or is not served by this relay.")
        check_model(caller, model)
        group = chat.settings.groups.get(caller.group)
        if group is None:
            raise PermissionDenied(f"Your group '{caller.group}' is not configured on this relay.",
                                   code="group_not_found")
        plan = chat.router.plan(group.name, model)
        if not plan:
            raise ModelNotFound(f"The model '{model}' is not available in your group.")
        price = chat.settings.prices.get(model)
        if price is None:
            raise InvalidRequest(f"The model '{model}' has no price configured, so it cannot be used; "
                                 "ask the operator to price it.", code="model_not_priced")
        if price.basis not in bases:
            raise InvalidRequest(f"The model '{model}' is priced {BASIS_WORDS[price.basis]}, which cannot meter "
                                 f"{TITLES[op]}; ask the operator to price it "
                                 f"{' or '.join(BASIS_WORDS[b] for b in sorted(bases))}.", code="model_not_priced")
        served = [c for c in plan if (k := ops_for(c.type)) is not None and k.wire(op) is not None]
        if not served:
            raise InvalidRequest(f"The model '{model}' is not served for {TITLES[op]} by this relay.",
                                 code="unsupported_operation")
        return served, price, group.ratio

    # ------------------------------------------------------------------ one request

    async def run(self, op: Operation, caller: Caller, *, client_ip: str = "",
                  request_id: str | None = None) -> JsonReply | StreamReply:
        plan, price, group_ratio = self.route(op.op, op.model, caller, op.bases)
        chat = self.chat
        qpu = chat.settings.billing.quota_per_usd
        lease = await chat.limiter.admit_async(caller)  # with Redis: one round trip
        rid = request_id or uuid.uuid4().hex
        try:
            hold = pricing.units_hold(price, op.estimate(), group_ratio, qpu)
            ticket = await chat.store.write(partial(
                billing.place_hold, request_id=rid, user_id=caller.user.id, token_id=caller.token.id,
                token_limited=not caller.token.unlimited, amount=hold, model=op.model))
        except BaseException:
            lease.release()
            raise
        run = _Run(op, caller, client_ip, rid, ticket, price, group_ratio, chat.monotonic(), lease)
        try:
            op.prepare(chat.settings.retry.max_attempts > 1 and sum(len(c.keys) or 1 for c in plan) > 1)
            reply, wire, model = await self._forward(run, plan)
            answer = await op.answer(reply, wire, model)
        except BaseException as exc:
            await self._settle(run, None, status=getattr(exc, "status", 500), error=str(exc))
            raise
        headers = {"X-Request-Id": rid, **lease.headers, "Content-Type": answer.content_type}
        if isinstance(answer, Streamed):
            return StreamReply(self._relay(run, reply, answer), headers)
        run.first_byte_ms = _ms(chat, run.started)
        await self._settle(run, answer.units, status=200)
        return JsonReply(200, answer.body, headers)

    async def _forward(self, run: _Run, plan: list[Channel]) -> tuple[Reply, str, str]:
        """Channel-keys in plan order until one answers (the chat pipeline's rules: the next
        channel on connect errors, timeouts, 429 and 5xx; the next key when a key is
        refused; never after a 400/404/413/422)."""
        chat, op = self.chat, run.op
        last: RelayError | None = None
        attempts = 0
        for channel in chat.health.order(plan):
            kind = ops_for(channel.type)
            wire = kind.wire(op.op) if kind is not None else None
            if kind is None or wire is None:
                continue
            model = channel.upstream_model(op.model)
            for key in chat.router.keys_in_turn(channel, chat.dead_keys(channel), fingerprint):
                if attempts >= chat.settings.retry.max_attempts:
                    raise last or UpstreamError("No upstream channel could serve this request.")
                try:
                    req = op.request(wire, model)
                except ValueError as exc:
                    last = InvalidRequest(str(exc))
                    break  # this channel's wire cannot carry the request; another may
                attempts += 1
                t0 = chat.monotonic()
                run.channel, run.upstream_model = channel, model
                try:
                    reply = await kind.open_op(chat.pool, channel, key, req)
                except UpstreamError as exc:
                    fault = op.client_fault()
                    if fault is not None:
                        raise fault from None
                    run.attempts.append({"channel": channel.name, "status": exc.status, "ms": _ms(chat, t0),
                                         "error": exc.message})
                    chat.health.failure(channel.name)
                    if not exc.retryable:
                        raise
                    last = exc
                    break
                run.attempts.append({"channel": channel.name, "status": reply.status, "ms": _ms(chat, t0)})
                if reply.status < 400:
                    return reply, wire, model
                last, verdict = await chat.upstream_failure(reply, channel, key)
                if verdict == "fatal":
                    raise last
                if verdict == "key":
                    continue
                break
        raise last or UpstreamError("No upstream channel could serve this request.")

    async def _relay(self, run: _Run, reply: Reply, answer: Streamed) -> AsyncIterator[bytes]:
        status, error, sent = 200, "", False
        try:
            async for chunk in answer.chunks:
                if run.first_byte_ms is None:
                    run.first_byte_ms = _ms(self.chat, run.started)
                sent = True
                yield chunk
        except RelayError as exc:  # headers are gone: the client sees a short body
            status, error = exc.status, exc.message
        except (asyncio.CancelledError, GeneratorExit):
            status, error = 499, "client closed the connection"
            raise
        finally:
            reply.close()
            await self._settle(run, answer.units() if sent else None, status=status, error=error)

    # ------------------------------------------------------------------ settlement

    async def _settle(self, run: _Run, units: Units | None, *, status: int, error: str = "") -> None:
        if run.settled:
            return
        run.settled = True
        chat = self.chat
        actual = (pricing.units_quota(run.price, units, run.group_ratio, chat.settings.billing.quota_per_usd)
                  if units is not None else 0)
        usage = (units.usage if units is not None else None) or Usage()
        run.lease.release(usage.total_tokens)
        if run.channel is not None and status < 500 and status != 499 and run.first_byte_ms is not None:
            chat.health.success(run.channel.name)
        row = log_row(run.request_id, run.caller, run.op.model, run.upstream_model, run.channel,
                      run.op.log_dialect, usage, actual, estimated=units is not None and units.estimated(run.price),
                      latency_ms=_ms(chat, run.started), first_byte_ms=run.first_byte_ms,
                      status=status, error=error, attempts=run.attempts, client_ip=run.client_ip,
                      created_at=chat.clock(), stream=False)
        await settle(chat, run.ticket, actual, row)


def log_row(request_id: str, caller: Caller, model: str, upstream_model: str, channel: Channel | None,
            dialect: str, usage: Usage, quota: int, *, estimated: bool, latency_ms: int, first_byte_ms: int | None,
            status: int, error: str, attempts: list[dict[str, Any]], client_ip: str, created_at: float,
            stream: bool) -> dict[str, Any]:
    return {
        "request_id": request_id, "user_id": caller.user.id, "token_id": caller.token.id,
        "token_name": caller.token.name, "model": model, "upstream_model": upstream_model,
        "channel": channel.name if channel else "", "dialect": dialect[:32],
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "cache_read_tokens": usage.cache_read_tokens, "cache_write_tokens": usage.cache_write_tokens,
        "quota": quota, "latency_ms": latency_ms, "first_byte_ms": first_byte_ms, "stream": stream,
        "estimated": estimated, "status": status, "error": error[:255], "attempts": orjson.dumps(attempts).decode(),
        "client_ip": client_ip[:64], "created_at": created_at,
    }


async def settle(chat: Pipeline, ticket: HoldTicket, actual: int, row: dict[str, Any] | None) -> None:
    """Close a hold at ``actual`` with its ledger entry and log row (one writer
    transaction), shielded: a client that goes away cannot leave the hold half-settled."""
    if row is not None:
        chat.metrics.settled(row)
    fut = chat.store.writer.submit_async(partial(billing.settle_hold, ticket=ticket, actual=actual, log_row=row))
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("settlement of request %s failed; its hold stays open for recovery", ticket.request_id)


# --------------------------------------------------------------------------- realtime

REALTIME_PROMPT_HOLD = 4096  # prompt tokens held per realtime response (the conversation so far)


class Tab:
    """A realtime session's running bill.

    One hold covers the next response; when that response's ``response.done`` arrives the
    hold is settled to its usage (ledger entry + log row) and the next hold is placed.  A
    hold that cannot be placed means the balance is spent: ``charge`` raises
    InsufficientQuota and the session is closed with an error event.  On close the open
    hold is settled: at nothing, or at an estimate when a response was cut short after
    text had reached the client.
    """

    def __init__(self, unary: UnaryPipeline, caller: Caller, model: str, price: Price, group_ratio: Decimal,
                 lease: Lease, client_ip: str) -> None:
        self.unary, self.caller, self.model, self.price = unary, caller, model, price
        self.group_ratio, self.lease, self.client_ip = group_ratio, lease, client_ip
        self.session_id = uuid.uuid4().hex
        self.channel: Channel | None = None
        self.upstream_model = model
        self.responses = 0
        self.tokens = 0
        self.charged = 0
        self.delivered: list[str] = []
        self._ticket: HoldTicket | None = None
        self._closed = False
        self._opened = unary.chat.monotonic()
        self._lock = asyncio.Lock()

    def _hold_amount(self) -> int:
        chat = self.unary.chat
        out = chat.settings.billing.default_max_tokens
        qpu = chat.settings.billing.quota_per_usd
        text = Usage(prompt_tokens=REALTIME_PROMPT_HOLD, completion_tokens=out)
        audio = Usage(prompt_tokens=REALTIME_PROMPT_HOLD, completion_tokens=out,
                      audio_prompt_tokens=REALTIME_PROMPT_HOLD, audio_completion_tokens=out)
        return max(pricing.units_hold(self.price, Units(usage=text), self.group_ratio, qpu),
                   pricing.units_quota(self.price, Units(usage=audio), self.group_ratio, qpu))

    async def open(self) -> None:
        """Hold for the first response; InsufficientQuota if the balance cannot cover it."""
        await self._hold()

    async def _hold(self) -> None:
        chat = self.unary.chat
        rid = f"rt-{self.session_id[:24]}-{self.responses + 1}"
        self._ticket = await chat.store.write(partial(
            billing.place_hold, request_id=rid, user_id=self.caller.user.id, token_id=self.caller.token.id,
            token_limited=not self.caller.token.unlimited, amount=self._hold_amount(), model=self.model))

    async def charge(self, usage: Usage) -> int:
        """Settle the open hold to one response's usage and hold for the next one."""
        async with self._lock:
            cost = await self._settle(usage, status=200, estimated=False)
            self.delivered.clear()
            await self._hold()
            return cost

    async def close(self, status: int = 200, error: str = "") -> None:
        """Settle what is open (once) and give the rate-limit lease back."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._ticket is not None:
                text = "".join(self.delivered)
                usage = Usage(completion_tokens=estimate_tokens(text), estimated=True) if text else None
                await self._settle(usage, status=status if usage is None else 499, estimated=True,
                                   error=error or ("session closed mid-response" if usage else ""))
            self.lease.release(self.tokens)

    async def _settle(self, usage: Usage | None, *, status: int, estimated: bool, error: str = "") -> int:
        ticket, self._ticket = self._ticket, None
        if ticket is None:
            return 0
        chat = self.unary.chat
        qpu = chat.settings.billing.quota_per_usd
        cost = pricing.units_quota(self.price, Units(usage=usage), self.group_ratio, qpu) if usage else 0
        self.responses += 1 if usage is not None else 0
        self.tokens += usage.total_tokens if usage else 0
        self.charged += cost
        row = None if usage is None and status == 200 else log_row(  # a clean end releases silently
            ticket.request_id, self.caller, self.model, self.upstream_model, self.channel, "realtime",
            usage or Usage(), cost, estimated=estimated and usage is not None, latency_ms=_ms(chat, self._opened),
            first_byte_ms=None, status=status, error=error, attempts=[], client_ip=self.client_ip,
            created_at=chat.clock(), stream=True)
        await settle(chat, ticket, cost, row)
        return cost


async def open_realtime(unary: UnaryPipeline, plan: list[Channel], model: str,
                        headers: dict[str, str], tab: Tab) -> aiohttp.ClientWebSocketResponse:
    """The upstream socket: channel-keys in plan order until one accepts the handshake."""
    chat = unary.chat
    last: RelayError | None = None
    attempts = 0
    for channel in chat.health.order(plan):
        kind = ops_for(channel.type)
        target = getattr(kind, "realtime_target", None)
        if kind is None or target is None or kind.wire("realtime") is None:
            continue
        up_model = channel.upstream_model(model)
        for key in chat.router.keys_in_turn(channel, chat.dead_keys(channel), fingerprint):
            if attempts >= chat.settings.retry.max_attempts:
                break
            attempts += 1
            url, auth = target(channel, key, up_model)
            sess = chat.pool.session(url)
            try:
                ws = await sess.ws_connect(url, headers={**headers, **auth}, autoping=True, heartbeat=None,
                                           max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_receive=None,
                                                                                           ws_close=5.0))
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in (401, 403):
                    await chat.kill_key(channel, key, f"upstream answered {exc.status} (key refused)")
                    last = UpstreamError("The upstream provider rejected relaykit's credentials; the operator has "
                                         "been told.")
                    continue
                chat.health.failure(channel.name)
                last = UpstreamError(f"The upstream refused the realtime session with status {exc.status}.")
                break
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                chat.health.failure(channel.name)
                last = UpstreamError("The upstream could not be reached.")
                break
            chat.health.success(channel.name)
            tab.channel, tab.upstream_model = channel, up_model
            return ws
    raise last or UpstreamError("No upstream channel could open a realtime session.")


def _ms(chat: Pipeline, since: float) -> int:
    return int((chat.monotonic() - since) * 1000)
