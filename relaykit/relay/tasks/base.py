"""What every task upstream adapter implements, and the HTTP call they share.

An adapter is one small class per vendor API (Midjourney-proxy, Suno, Kling, Jimeng,
OpenAI videos, the built-in mock): ``submit`` starts a task upstream, ``poll`` reads its
state, ``media`` says where a finished result can be downloaded.  Upstream answers are
classified the same way everywhere:

* no answer, a timeout, 401/403, 408/409, 429 or 5xx: ``UpstreamError`` (the submit may
  go to another channel; a poll is retried later with backoff);
* any other 4xx, or a vendor code that refuses the request: ``Refused`` (told to the
  client, nothing charged);
* the upstream no longer knows a task it accepted: ``TaskGone``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson

from ...domain import Channel, Timeouts
from ...errors import RelayError, UpstreamError, UpstreamTimeout
from ...store.tasks import TaskRecord
from ..upstream import UpstreamPool

MAX_ANSWER_BYTES = 8 * 1024 * 1024


class Refused(RelayError):
    """The upstream (or its vendor code) refused the task; nothing is charged."""

    status = 400
    kind = "invalid_request"
    code = "upstream_refused"

    def __init__(self, message: str, *, status: int = 400, vendor_code: int | None = None,
                 elsewhere: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.vendor_code = vendor_code
        self.elsewhere = elsewhere  # another channel may take it (a full queue, a busy account)


class TaskGone(UpstreamError):
    """The upstream answered that it does not know the task (any more)."""


@dataclass(frozen=True, slots=True)
class Submit:
    """One task to start upstream."""

    task_id: str                        # relaykit's id (some vendors keep it as an external id)
    action: str
    model: str                          # the upstream model name (after model_map)
    fields: Mapping[str, Any]           # the checked client fields (dialects.task_requests)
    seconds: int = 0                    # clip length (video)
    parent: TaskRecord | None = None    # the task this one acts on (Midjourney change/action)


@dataclass(frozen=True, slots=True)
class Accepted:
    upstream_id: str
    status: str = "SUBMITTED"
    code: int = 1                       # the Midjourney code to repeat (1, 21 or 22)
    description: str = "Submit success"


@dataclass(frozen=True, slots=True)
class Snapshot:
    status: str                         # relaykit's internal status (store/tasks.py)
    progress: int = 0
    fail_reason: str = ""
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # sent only to the channel's own origin


class TaskAdapter(Protocol):
    platforms: frozenset[str]
    default_seconds: int

    async def submit(self, http: Http, channel: Channel, key: str, req: Submit) -> Accepted: ...

    async def poll(self, http: Http, channel: Channel, key: str, task: TaskRecord) -> Snapshot: ...

    def media(self, channel: Channel, key: str, task: TaskRecord) -> Media | None: ...


def percent(value: Any) -> int:
    """``"42%"`` or ``42`` -> 42 (clamped to 0-100)."""
    if isinstance(value, str):
        value = value.strip().rstrip("%") or "0"
        try:
            value = float(value)
        except ValueError:
            return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, min(100, int(value)))


def message_of(body: Any, *keys: str) -> str:
    """The first string found under ``keys`` (dotted paths allowed) in a vendor answer."""
    for key in keys:
        node = body
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node[:500]
    return ""


class Http:
    """JSON over the upstream pool's keep-alive sessions; redirects are never followed
    (the upstream host comes only from the operator's config)."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    async def call(self, method: str, url: str, *, headers: Mapping[str, str], timeouts: Timeouts,
                   body: bytes | None = None, data: aiohttp.FormData | None = None) -> tuple[int, Any]:
        sess = self.pool.session(url)
        timeout = aiohttp.ClientTimeout(total=timeouts.connect + timeouts.first_byte + timeouts.idle,
                                        sock_connect=timeouts.connect, sock_read=timeouts.idle)
        try:
            async with sess.request(method, url, headers=dict(headers), data=body if data is None else data,
                                    timeout=timeout, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except asyncio.TimeoutError:
            raise UpstreamTimeout("The task upstream did not answer in time.") from None
        except aiohttp.ClientConnectorError:
            raise UpstreamError("The task upstream could not be reached.") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"The task upstream request failed ({type(exc).__name__}).") from None
        if len(raw) > MAX_ANSWER_BYTES:
            raise UpstreamError("The task upstream answered with more than relaykit accepts.")
        try:
            return status, orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            return status, None

    @staticmethod
    def check(status: int, body: Any, *message_keys: str) -> None:
        """Raise for an HTTP failure, classified as the module docstring says."""
        if status < 400:
            return
        said = message_of(body, *message_keys, "message", "error.message", "description", "error")
        if status in (401, 403):
            raise UpstreamError("The task upstream rejected relaykit's credentials.", status=502)
        if status in (408, 409, 429) or status >= 500:
            raise UpstreamError(f"The task upstream failed with status {status}.", status=502)
        raise Refused(f"The upstream refused the task: {said}" if said else
                      f"The upstream refused the task with status {status}.", status=status if status != 404 else 400)
