"""The request pipeline: the one place where the stage order lives.

    auth (cached token) -> model access -> price -> hold (writer thread)
      -> select channel -> passthrough or convert via the hub -> forward
      -> retry on another channel while nothing reached the client
      -> answer (JSON, or a stream relayed chunk by chunk, metering as it goes)
      -> settle the hold to the actual cost + ledger entry + log row (one transaction)

Handlers call ``Pipeline.chat`` and render what it returns.  Every exit path after the
hold (success, upstream failure, client disconnect, error mid-stream) goes through
``_settle`` exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import orjson

from ..dialects import openai_chat
from ..dialects.hub import UpstreamStreamError
from ..dialects.registry import dialect as dialect_module
from ..dialects.rawjson import replace_top_level
from ..dialects.sse import SSEParser
from ..domain import Channel, Price, Usage
from ..errors import (InvalidRequest, ModelNotFound, PermissionDenied, RateLimited, RelayError,
                      UpstreamError)
from ..settings import Settings
from ..store import billing
from ..store.billing import HoldTicket
from ..store.store import Store
from . import pricing
from .auth import Caller, check_model
from ..store import channels as channels_repo
from .channels import kind_for
from .channels.base import VENDOR_HEADERS, UpstreamRequest
from .health import Health, HealthSettings, fingerprint, mask
from .limits import Lease, Limiter
from .metrics import NO_METRICS
from .meter import IMAGE_TOKENS, MESSAGE_OVERHEAD, estimate_tokens, usage_from_hub
from .select import Router
from .upstream import Reply, UpstreamPool

log = logging.getLogger("relaykit.relay")

ERROR_BODY_LIMIT = 1024 * 1024
WRONG_TYPE = "A field of the request has the wrong type (an array or object where the API expects one?)."
MAX_HOLD = 2 ** 62  # quota units; balances are 64-bit integers in the database


@dataclass(slots=True)
class ChatCall:
    """One client request, decoded only as far as routing needs."""

    dialect: str               # the client's dialect (a relaykit.dialects module NAME)
    body: dict[str, Any]
    model: str
    stream: bool
    caller: Caller
    client_ip: str = ""
    include_usage: bool = False  # the client asked for usage in its stream
    raw: bytes = b""             # the client's body as received (passthrough edits these bytes)
    headers: dict[str, str] = field(default_factory=dict)  # the client's request headers
    query: dict[str, str] = field(default_factory=dict)
    request_id: str = ""         # assigned by the pipeline when empty
    received: float = field(default_factory=time.perf_counter)  # for the overhead metric


@dataclass(slots=True)
class JsonReply:
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class StreamReply:
    chunks: AsyncIterator[bytes]
    headers: dict[str, str]


@dataclass(slots=True)
class _Run:
    """What the pipeline learns while serving one call (for settlement and the log)."""

    call: ChatCall
    ticket: HoldTicket
    price: Price
    group_ratio: Decimal
    prompt_estimate: int
    started: float
    lease: Lease
    channel: Channel | None = None
    upstream_model: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    first_byte_ms: int | None = None
    upstream_s: float = 0.0     # time spent waiting on upstreams (for x-relaykit-overhead-ms)
    delivered: list[str] = field(default_factory=list)
    usage: Usage | None = None
    settled: bool = False


class Pipeline:
    def __init__(self, settings: Settings, store: Store, pool: UpstreamPool, router: Router,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.router = router
        self.clock = clock
        self.monotonic = monotonic
        h = settings.health
        self.health = Health(HealthSettings(h.eject_after, h.eject_seconds, h.eject_max_seconds), monotonic)
        self.limiter = Limiter(settings.limits, monotonic)
        self.metrics = NO_METRICS  # the app hands in a Metrics (relay/metrics.py)
        # request ids: a random per-process prefix and a counter (unique across workers and
        # restarts, and cheaper than uuid4's urandom call per request)
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count(1)
        self._dead_here: set[str] = set()  # key fingerprints this process saw refused (until the cache has them)
        self.stopping = False  # set by `relaykit serve` when it cuts what outlived the drain

    # ------------------------------------------------------------------ stages before forwarding

    def _route(self, call: ChatCall) -> tuple[list[Channel], Price, Decimal]:
        if not self.router.serves_anywhere(call.model):
            raise ModelNotFound(f"The model '{call.model}' does not exist or is not served by this relay.")
        check_model(call.caller, call.model)
        group = self.settings.groups.get(call.caller.group)
        if group is None:
            raise PermissionDenied(f"Your group '{call.caller.group}' is not configured on this relay.",
                                   code="group_not_found")
        plan = self.router.plan(group.name, call.model)
        if not plan:
            raise ModelNotFound(f"The model '{call.model}' is not available in your group.")
        price = self.settings.prices.get(call.model)
        if price is None:
            raise InvalidRequest(f"The model '{call.model}' has no price configured, so it cannot be used; "
                                 "ask the operator to price it.", code="model_not_priced")
        if price.basis not in ("token", "call"):  # per image / second / character: not chat (never free)
            raise InvalidRequest(f"The model '{call.model}' is priced per {price.basis}, which chat cannot meter; "
                                 "use its own endpoint (images, audio).", code="model_not_priced")
        return plan, price, group.ratio

    def _to_hub_request(self, call: ChatCall) -> dict[str, Any]:
        if call.dialect == openai_chat.NAME:
            return call.body
        try:
            return dict(dialect_module(call.dialect).request_to_hub(call.body, model=call.model))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        except (TypeError, AttributeError):  # e.g. "tools": 5, which a converter iterated unchecked
            raise InvalidRequest(WRONG_TYPE) from None

    def new_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    async def chat(self, call: ChatCall) -> JsonReply | StreamReply:
        if not call.request_id:
            call.request_id = self.new_request_id()
        plan, price, group_ratio = self._route(call)
        hub_request = self._to_hub_request(call)
        lease = await self.limiter.admit_async(call.caller)  # with Redis: one round trip
        try:
            return await self._chat(call, plan, price, group_ratio, hub_request, lease)
        except BaseException:
            lease.release()  # no-op when settlement already released it
            raise

    async def _chat(self, call: ChatCall, plan: list[Channel], price: Price, group_ratio: Decimal,
                    hub_request: dict[str, Any], lease: Lease) -> JsonReply | StreamReply:
        try:
            text, images = openai_chat.prompt_text(hub_request)
        except (TypeError, AttributeError):
            raise InvalidRequest(WRONG_TYPE) from None
        prompt_estimate = (estimate_tokens(text) + images * IMAGE_TOKENS
                           + MESSAGE_OVERHEAD * len(hub_request.get("messages") or ()))
        max_out = openai_chat.max_output_tokens(hub_request) or self.settings.billing.default_max_tokens
        if max_out < 1:  # a negative budget would make a negative hold: credit to spend meanwhile
            raise InvalidRequest("The request's output token limit must be a positive integer.",
                                 code="invalid_max_tokens")
        hold = pricing.hold_quota(price, group_ratio, self.settings.billing.quota_per_usd,
                                  prompt_tokens=prompt_estimate, max_output_tokens=max_out)
        if hold >= MAX_HOLD:  # no balance covers it, and no database column holds the number
            raise InvalidRequest("The request's output token limit is too large to reserve credit for; "
                                 "lower max_tokens.", code="max_tokens_too_large")
        placed = self.store.submit_write(partial(
            billing.place_hold, request_id=call.request_id, user_id=call.caller.user.id,
            token_id=call.caller.token.id, token_limited=not call.caller.token.unlimited, amount=hold,
            model=call.model))
        # while the writer commits the hold, the first attempt's request is built (nothing
        # is sent before the hold is in: SPEC §6.2); a failure here is met again after it
        order = self.health.order(plan)
        try:
            first = self._prepare(call, order[0], hub_request) if order else None
        except Exception:
            first = None
        ticket = await placed
        run = _Run(call, ticket, price, group_ratio, prompt_estimate, self.monotonic(), lease)
        try:
            reply, up_dialect = await self._forward(run, order, hub_request, first)
        except BaseException as exc:
            await self._settle(run, status=getattr(exc, "status", 500), error=str(exc)[:255], charge=False)
            raise
        if call.stream:
            return StreamReply(self._relay_stream(run, reply, up_dialect), self._headers(run, stream=True))
        try:
            return await self._relay_json(run, reply, up_dialect)
        except BaseException as exc:
            await self._settle(run, status=getattr(exc, "status", 500), error=str(exc)[:255], charge=False)
            raise

    # ------------------------------------------------------------------ forwarding with retry

    def _upstream_body(self, call: ChatCall, hub_request: dict[str, Any], up_dialect: str, model: str) -> bytes:
        if up_dialect == call.dialect:
            return self._passthrough_body(call, model)
        hub = dict(hub_request)
        hub["stream"] = call.stream
        if call.stream:
            hub["stream_options"] = {"include_usage": True}
        else:
            hub.pop("stream_options", None)
        return orjson.dumps(dialect_module(up_dialect).request_from_hub(hub, model=model))

    def _passthrough_body(self, call: ChatCall, model: str) -> bytes:
        """The client's bytes with only the model renamed (and OpenAI stream usage asked for)."""
        raw = call.raw or orjson.dumps(call.body)
        if call.dialect == "gemini":
            return raw  # the model travels in the URL
        out = replace_top_level(raw, "model", model) if model != call.body.get("model") else raw
        if call.dialect == openai_chat.NAME and call.stream and not call.include_usage:
            so = call.body.get("stream_options")
            merged = {**so, "include_usage": True} if isinstance(so, dict) else {"include_usage": True}
            out = replace_top_level(out, "stream_options", merged)  # the usage chunk is dropped on the way back
        return out

    def _prepare(self, call: ChatCall, channel: Channel,
                 hub_request: dict[str, Any]) -> tuple[Channel, Any, str, str, UpstreamRequest]:
        """What an attempt on ``channel`` sends: its kind, the upstream model and dialect,
        and the request (the client's bytes edited, or converted through the hub)."""
        kind = kind_for(channel.type)
        assert kind is not None  # the router only plans known types
        model = channel.upstream_model(call.model)
        up_dialect = kind.dialect_for(channel, call.dialect)
        same = up_dialect == call.dialect
        req = UpstreamRequest(
            dialect=up_dialect, model=model, stream=call.stream,
            body=self._upstream_body(call, hub_request, up_dialect, model),
            headers={h: call.headers[h] for h in VENDOR_HEADERS.get(up_dialect, ()) if same and h in call.headers},
            query={k: v for k, v in call.query.items() if same and k == "beta"})
        return channel, kind, model, up_dialect, req

    async def _forward(self, run: _Run, order: list[Channel], hub_request: dict[str, Any],
                       first: tuple[Channel, Any, str, str, UpstreamRequest] | None = None) -> tuple[Reply, str]:
        """Try channel-keys in ``order`` (the plan after health) until one answers, while
        nothing has reached the client: the next channel on connect errors, timeouts, 429
        and 5xx; the next key of the same channel when a key is refused; never the same
        channel-key twice; never after a 400/404/413/422.  ``first`` is the first
        channel's request when it was built while the hold was being placed."""
        call = run.call
        last: RelayError | None = None
        attempts = 0
        limit = self.settings.retry.max_attempts
        dead = self.store.cache.snapshot.dead_keys
        for channel in order:
            if first is not None and first[0] is channel:
                _, kind, model, up_dialect, req = first
            else:
                _, kind, model, up_dialect, req = self._prepare(call, channel, hub_request)
            first = None
            keys = self.router.keys_in_turn(channel, set(dead.get(channel.name, {})) | self._dead_here,
                                            fingerprint)
            for key in keys:
                if attempts >= limit:
                    raise last or UpstreamError("No upstream channel could serve this request.")
                attempts += 1
                t0 = self.monotonic()
                run.channel, run.upstream_model = channel, model
                if attempts == 1:
                    self.metrics.overhead(time.perf_counter() - call.received)
                try:
                    reply = await kind.open(self.pool, channel, key, req)
                    run.upstream_s += self.monotonic() - t0
                except UpstreamError as exc:
                    run.upstream_s += self.monotonic() - t0
                    run.attempts.append({"channel": channel.name, "status": exc.status, "ms": self._ms(t0),
                                         "error": exc.message})
                    self.health.failure(channel.name)
                    self.metrics.upstream_error(channel.name, 0)
                    last = exc
                    break  # the channel is unwell: another key would not help
                run.attempts.append({"channel": channel.name, "status": reply.status, "ms": self._ms(t0)})
                if reply.status < 300 and not _is_html(reply):
                    return reply, up_dialect
                if reply.status < 400:  # a redirect (never followed), or a proxy's error page
                    reply.close()
                    self.health.failure(channel.name)
                    last = UpstreamError("The upstream answered with a redirect, which relaykit does not follow."
                                         if reply.status >= 300 else
                                         "The upstream answered with an HTML page instead of an API response.")
                    run.attempts[-1]["error"] = last.message
                    break
                self.metrics.upstream_error(channel.name, reply.status)
                last, verdict = await self._upstream_failure(reply, channel, key)
                if verdict == "fatal":
                    raise last
                if verdict == "key":
                    continue  # same channel, next key
                break
        raise last or UpstreamError("No upstream channel could serve this request.")

    async def _upstream_failure(self, reply: Reply, channel: Channel, key: str) -> tuple[RelayError, str]:
        """Read and classify an upstream error: ("fatal" = tell the client now, "key" = this
        key is dead, try the next, "channel" = try the next channel)."""
        status = reply.status
        try:
            raw = await reply.read(ERROR_BODY_LIMIT)
        except RelayError:
            raw = b""
        finally:
            reply.close()
        message = _error_message(raw)
        for k in channel.keys:  # exact-value redaction: an upstream may echo the key
            if k:
                message = message.replace(k, "[redacted]")
        lowered = message.lower()
        out_of_credit = any(w in lowered for w in ("insufficient_quota", "insufficient quota", "credit balance",
                                                   "exceeded your current quota", "billing"))
        if status in (401, 403) or (status in (400, 402, 429) and out_of_credit):
            reason = f"upstream answered {status}" + (" (out of credit)" if out_of_credit else " (key refused)")
            await self._kill_key(channel, key, reason)
            return UpstreamError("The upstream provider rejected relaykit's credentials; the operator has "
                                 "been told.", status=502), "key"
        if status == 429:
            retry_after = _retry_after(reply.headers.get("Retry-After"))
            self.health.cool_down(channel.name, retry_after if retry_after is not None else 1.0)
            return RateLimited("The upstream provider is rate limiting requests; try again shortly.",
                               code="upstream_rate_limited",
                               headers={"Retry-After": str(max(1, int(retry_after or 1)))}), "channel"
        if status >= 500:
            self.health.failure(channel.name)
            return UpstreamError(f"The upstream provider failed with status {status}.", status=502), "channel"
        if status in (408, 409):
            return UpstreamError(f"The upstream provider answered {status}.", status=502), "channel"
        err = InvalidRequest(f"The upstream provider refused the request: {message}" if message
                             else f"The upstream provider refused the request with status {status}.")
        err.status = status if status in (400, 404, 413, 422) else 400
        return err, "fatal"

    async def _kill_key(self, channel: Channel, key: str, reason: str) -> None:
        fp = fingerprint(key)
        self._dead_here.add(fp)
        log.warning("channel %s: key %s disabled: %s", channel.name, mask(key), reason)
        try:
            await self.store.write(partial(channels_repo.set_key_dead, channel=channel.name, fp=fp, reason=reason))
        except Exception:
            log.exception("could not record the dead key of channel %s", channel.name)

    # ------------------------------------------------------------------ hooks for relay.unary
    # The non-chat endpoints (embeddings, rerank, images, audio, realtime) fail over by the
    # same rules: these expose the pieces they share, unchanged.

    def dead_keys(self, channel: Channel) -> set[str]:
        """Fingerprints of the channel's keys known dead (database cache and this process)."""
        return set(self.store.cache.snapshot.dead_keys.get(channel.name, {})) | self._dead_here

    async def upstream_failure(self, reply: Reply, channel: Channel, key: str) -> tuple[RelayError, str]:
        return await self._upstream_failure(reply, channel, key)

    async def kill_key(self, channel: Channel, key: str, reason: str) -> None:
        await self._kill_key(channel, key, reason)

    # ------------------------------------------------------------------ answering

    def _headers(self, run: _Run, *, stream: bool) -> dict[str, str]:
        h = {"X-Request-Id": run.call.request_id, **run.lease.headers}
        if self.settings.server.expose_overhead:
            # time spent in relaykit so far, upstream waits excluded (for streams: before the first byte)
            overhead = max(0.0, self.monotonic() - run.started - run.upstream_s)
            h["x-relaykit-overhead-ms"] = f"{overhead * 1000:.3f}"
        if stream:
            h.update({"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                      "X-Accel-Buffering": "no"})
        else:
            h["Content-Type"] = "application/json"
        return h

    async def _relay_json(self, run: _Run, reply: Reply, up_dialect: str) -> JsonReply:
        call = run.call
        t0 = self.monotonic()
        try:
            raw = await reply.read()
        finally:
            reply.close()
            run.upstream_s += self.monotonic() - t0
        run.first_byte_ms = self._ms(run.started)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamError("The upstream answered with something that is not JSON.", retryable=False) from None
        if not isinstance(body, dict):
            raise UpstreamError("The upstream answered with an unexpected JSON value.", retryable=False)
        rid, created = "chatcmpl-" + call.request_id, int(self.clock())
        try:
            hub = dialect_module(up_dialect).response_to_hub(body, model=run.upstream_model, response_id=rid,
                                                            created=created)
        except UpstreamStreamError as exc:
            raise UpstreamError(exc.message, retryable=False) from None
        except (KeyError, TypeError, ValueError):
            raise UpstreamError("The upstream answered with a response relaykit cannot read.",
                                retryable=False) from None
        run.usage = usage_from_hub(openai_chat.usage_from_body(hub.get("usage")))
        run.delivered.append(openai_chat.delta_text(hub))
        if up_dialect == call.dialect:
            out = raw
        else:
            out = orjson.dumps(dialect_module(call.dialect).response_from_hub(hub, model=call.model))
        await self._settle(run, status=200)
        return JsonReply(200, out, self._headers(run, stream=False))

    async def _relay_stream(self, run: _Run, reply: Reply, up_dialect: str) -> AsyncIterator[bytes]:
        call = run.call
        passthrough = up_dialect == call.dialect
        rid, created = "chatcmpl-" + call.request_id, int(self.clock())
        upstream = dialect_module(up_dialect).StreamToHub(model=run.upstream_model, response_id=rid, created=created)
        if call.dialect == openai_chat.NAME:
            client = openai_chat.StreamFromHub(model=call.model, response_id=rid, created=created,
                                               include_usage=call.include_usage)
        else:
            client = dialect_module(call.dialect).StreamFromHub(model=call.model, response_id=rid, created=created)
        parser = SSEParser()
        status, error = 200, ""
        out: list[bytes] = []  # events ready for the client: an error must not swallow them
        self.metrics.stream_opened()
        vendor_error = False   # passthrough: the upstream's own error event is in ``out``
        forwarded = False      # some upstream events already went to the client as they were
        try:
            async for raw in reply.chunks():
                if run.first_byte_ms is None:
                    run.first_byte_ms = self._ms(run.started)
                for ev in parser.feed(raw):
                    try:
                        hub_chunks = upstream.feed(ev.event, ev.data)
                    except UpstreamStreamError:
                        if passthrough and _is_json(ev.data):  # the vendor's own error event: its SDK knows it
                            out.append(ev.raw)
                            vendor_error = True
                        raise
                    for ch in hub_chunks:
                        self._meter(run, ch)
                    if passthrough:
                        if not (call.dialect == openai_chat.NAME and not call.include_usage
                                and any(_usage_only(ch) for ch in hub_chunks)):
                            out.append(ev.raw)
                    else:
                        out.extend(client.feed(ch) for ch in hub_chunks)
                if out:
                    ready, out, forwarded = b"".join(out), [], True
                    yield ready
            for ev in parser.flush():
                if passthrough:
                    out.append(ev.raw)  # a last event the upstream did not terminate still reaches the client
                for ch in upstream.feed(ev.event, ev.data):
                    self._meter(run, ch)
                    if not passthrough:
                        out.append(client.feed(ch))
            for ch in upstream.finish():
                self._meter(run, ch)
                if not passthrough:
                    out.append(client.feed(ch))
            if not passthrough:
                out.append(client.close())
            if out:
                ready, out = b"".join(out), []
                yield ready
        except (UpstreamStreamError, RelayError) as exc:
            status = getattr(exc, "status", 502)
            error = exc.message
            ready, out = b"".join(out), []
            yield ready if vendor_error else ready + client.error(
                exc.message, status, passthrough=passthrough and (forwarded or bool(ready)))
        except (asyncio.CancelledError, GeneratorExit):
            # the only way out of this generator at a yield: the client went away, or a
            # shutdown cut the stream after the drain
            status, error = ((503, "relaykit shut down before the stream finished") if self.stopping
                             else (499, "client closed the connection"))
            raise
        finally:
            self.metrics.stream_closed()
            reply.close()
            await self._settle(run, status=status, error=error, charge=True)

    def _meter(self, run: _Run, chunk: dict[str, Any]) -> None:
        u = chunk.get("usage")
        if u:
            got = usage_from_hub(openai_chat.usage_from_body(u))
            if got is not None:
                run.usage = got
        text = openai_chat.delta_text(chunk)
        if text:
            run.delivered.append(text)

    # ------------------------------------------------------------------ settlement

    async def _settle(self, run: _Run, *, status: int, error: str = "", charge: bool = True) -> None:
        if run.settled:
            return
        run.settled = True
        delivered = "".join(run.delivered)
        usage = run.usage
        if usage is None and charge and (delivered or status == 200):
            usage = Usage(prompt_tokens=run.prompt_estimate, completion_tokens=estimate_tokens(delivered),
                          estimated=True)
        if not charge and not delivered:
            usage = None
        actual = (pricing.quota_for(usage, run.price, run.group_ratio, self.settings.billing.quota_per_usd)
                  if usage is not None else 0)
        call = run.call
        u = usage or Usage()
        row = {
            "request_id": call.request_id, "user_id": call.caller.user.id, "token_id": call.caller.token.id,
            "token_name": call.caller.token.name, "model": call.model, "upstream_model": run.upstream_model,
            "channel": run.channel.name if run.channel else "", "dialect": call.dialect,
            "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cache_read_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens,
            "quota": actual, "latency_ms": self._ms(run.started), "first_byte_ms": run.first_byte_ms,
            "stream": call.stream, "estimated": u.estimated, "status": status, "error": error[:255],
            "attempts": orjson.dumps(run.attempts).decode(), "client_ip": call.client_ip[:64],
            "created_at": self.clock(),
        }
        # must_run: a request cancelled now (client gone, drain) is still settled
        fut = self.store.writer.submit_async(partial(billing.settle_hold, ticket=run.ticket, actual=actual,
                                                     log_row=row), must_run=True)
        # the bookkeeping that needs no database runs while the writer commits
        run.lease.release(usage.total_tokens if usage else 0)
        if run.channel is not None and status < 500 and status != 499 and run.first_byte_ms is not None:
            self.health.success(run.channel.name)
        self.metrics.settled(row)
        try:
            await fut
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("settlement of request %s failed; its hold stays open for recovery", call.request_id)

    def _ms(self, since: float) -> int:
        return int((self.monotonic() - since) * 1000)


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; an HTTP date is ignored)."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 3600.0)
    except ValueError:
        return None


def _is_html(reply: Reply) -> bool:
    return "text/html" in reply.headers.get("Content-Type", "").lower()


def _is_json(data: str) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _usage_only(chunk: dict[str, Any]) -> bool:
    return not chunk.get("choices") and bool(chunk.get("usage"))


def _error_message(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"][:500]
        if isinstance(err, str):
            return err[:500]
    return ""

