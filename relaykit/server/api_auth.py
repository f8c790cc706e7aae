"""The self-service API's door: session authentication, failure limiters and the seed's
response shape ``{"success": bool, "message": str, "data": ...}``.

Only session tokens (``rks-...``, from ``POST /api/user/login``) open ``/api``, and only
from the ``Authorization`` header; relay tokens (``sk-...``) are refused here just as
session tokens find nothing on the relay endpoints.  Failed logins (per user name and
client IP) and wrong card codes (per customer) are counted in memory, per process: a
restart forgets them and several instances count separately (Redis-backed windows are
issue 8's business).  Errors are rendered here, not by the dialect middleware, so a
dashboard always gets the ``success``/``message`` body with a real HTTP status.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

import orjson
from aiohttp import web

from ..errors import AuthenticationFailed, PermissionDenied, RateLimited, RelayError
from ..store import sessions
from ..store.tables import Tables
from .services import services

log = logging.getLogger("relaykit.server.api")
Handler = Callable[[web.Request], Awaitable[web.Response]]


class FailureLimiter:
    """At most ``limit`` failures per key within ``window`` seconds (a sliding window)."""

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[Any, deque[float]] = {}

    def _recent(self, key: Any) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        cutoff = self._clock() - self.window
        while hits and hits[0] <= cutoff:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def check(self, key: Any, what: str) -> None:
        hits = self._recent(key)
        if hits is not None and len(hits) >= self.limit:
            wait = max(1, math.ceil(hits[0] + self.window - self._clock()))
            raise RateLimited(f"Too many {what}; try again in {wait} seconds.", headers={"Retry-After": str(wait)})

    def record(self, key: Any) -> None:
        if key not in self._hits and len(self._hits) >= self._max_keys:
            self._hits.pop(next(iter(self._hits)))  # the oldest key goes first
        self._hits.setdefault(key, deque()).append(self._clock())

    def clear(self, key: Any) -> None:
        self._hits.pop(key, None)


class SystemPick:
    """Random whole numbers from the operating system's CSPRNG (check-in bonuses)."""

    def between(self, low: int, high: int) -> int:
        return low + secrets.randbelow(high - low + 1)


@dataclass
class AccountsState:
    card_key: bytes
    clock: Callable[[], float] = time.time
    pick: Any = field(default_factory=SystemPick)  # anything with between(low, high) -> int
    logins: FailureLimiter = field(default_factory=lambda: FailureLimiter(5, 900))
    redeems: FailureLimiter = field(default_factory=lambda: FailureLimiter(5, 900))
    registrations: FailureLimiter = field(default_factory=lambda: FailureLimiter(5, 3600))


ACCOUNTS: web.AppKey[AccountsState] = web.AppKey("relaykit.accounts", AccountsState)


def accounts_state(request: web.Request) -> AccountsState:
    return request.app[ACCOUNTS]


# --------------------------------------------------------------------------- responses

def ok(data: Any = None, message: str = "") -> web.Response:
    return web.Response(body=orjson.dumps({"success": True, "message": message, "data": data}),
                        content_type="application/json")


def failure(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"success": False, "message": message, "data": None}),
                        content_type="application/json", headers=headers)


def api(fn: Handler) -> Handler:
    """Render every error of an /api handler in the seed's shape, with its HTTP status."""

    @wraps(fn)
    async def handler(request: web.Request) -> web.Response:
        try:
            return await fn(request)
        except RelayError as err:
            status = err.status if 400 <= err.status < 600 else 400  # CLI-kind errors are the caller's
            return failure(status, err.message, err.headers)
        except web.HTTPRequestEntityTooLarge:
            return failure(413, "The request body is too large.")
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return failure(500, "relaykit hit an internal error; the operator can find it in the log.")

    return handler


# --------------------------------------------------------------------------- sessions

@dataclass(frozen=True, slots=True)
class Me:
    id: int
    name: str
    group: str
    role: str
    status: str


def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "").strip()
    if not auth:
        return None
    scheme, _, value = auth.partition(" ")
    token = value.strip() if scheme.lower() == "bearer" else auth  # one-api clients send the bare token
    return token or None


async def current_user(request: web.Request) -> Me:
    token = bearer(request)
    if not token:
        raise AuthenticationFailed("Log in first: POST /api/user/login, then send "
                                   "'Authorization: Bearer <session token>'.", code="not_logged_in")
    if token.startswith("sk-"):
        raise AuthenticationFailed("Relay API keys (sk-...) do not work on /api; log in with POST /api/user/login "
                                   "and send the session token instead.", code="relay_key_on_api")
    if len(token) > 256 or not token.isprintable():
        raise AuthenticationFailed("The session token is not valid; log in again.", code="invalid_session")
    at = accounts_state(request).clock()

    def find(t: Tables) -> Me | None:
        u = sessions.session_user(t, token, at)
        return None if u is None else Me(u.id, u.name, u.group, u.role, u.status)

    me = await services(request).store.read(find)
    if me is None:
        raise AuthenticationFailed("The session token is not valid or has expired; log in again.",
                                   code="invalid_session")
    if me.status != "active":
        raise PermissionDenied("This account is disabled.", code="account_disabled")
    return me
