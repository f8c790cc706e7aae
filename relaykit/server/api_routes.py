"""The customers' self-service API (SPEC §4): login, profile, check-in, card redemption,
their own relay tokens and request logs, in the seed's ``{"success", "message", "data"}``
shape.

Thin handlers: parse, call one repository function through ``store.read`` or
``store.write`` (never peewee on the event loop), render.  Password checks (scrypt, tens
of milliseconds) run in a worker thread.  ``register`` adds the routes and the state they
share (limiters, card key, random source) to the app.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from ..errors import AuthenticationFailed, CliError, InvalidRequest, NotFoundError, PermissionDenied, RelayError
from ..relay.pricing import usd_to_quota
from ..settings import Settings
from ..store import accounts, billing, cards, self_service, sessions
from ..store.store import Store
from ..store.tables import Tables
from .api_auth import ACCOUNTS, AccountsState, Me, accounts_state, api, bearer, current_user, failure, ok
from .body import read_json
from .services import services

MAX_PAGE = 100


def register(app: web.Application, settings: Settings, store: Store, *,
             clock: Callable[[], float] = time.time) -> None:
    app[ACCOUNTS] = AccountsState(card_key=cards.load_card_key(cards.card_key_path(settings)), clock=clock)
    r = app.router
    r.add_post("/api/user/login", login)
    r.add_post("/api/user/logout", logout)
    r.add_post("/api/user/register", register_user)
    r.add_get("/api/user/self", user_self)
    r.add_post("/api/user/checkin", checkin)
    r.add_post("/api/user/redeem", redeem)
    r.add_post("/api/user/topup", redeem)  # the seed's name for redeeming a card
    for path in ("/api/token", "/api/token/"):
        r.add_get(path, token_list)
        r.add_post(path, token_create)
        r.add_put(path, token_update)
    r.add_get("/api/token/{id}", token_get)
    r.add_delete("/api/token/{id}", token_delete)
    r.add_get("/api/log/self", log_self)
    r.add_route("*", "/api/{tail:.*}", unknown)


def _settings(request: web.Request) -> Settings:
    return services(request).settings  # read per request: SIGHUP swaps the settings


def _store(request: web.Request) -> Store:
    return services(request).store


def _usd(quota: int, s: Settings) -> float:
    return round(quota / s.billing.quota_per_usd, 6)


async def _body(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _text(body: dict[str, Any], key: str, limit: int = 256) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v or len(v) > limit:
        raise InvalidRequest(f"'{key}' is required and must be a string of at most {limit} characters.")
    return v


def _page(request: web.Request, size_keys: tuple[str, ...] = ("size", "page_size")) -> tuple[int, int]:
    try:
        page = int(request.query.get("p", "0"))
        raw_size = next((request.query[k] for k in size_keys if k in request.query), "20")
        size = int(raw_size)
    except ValueError:
        raise InvalidRequest("'p' and 'size' must be whole numbers.") from None
    if page < 0 or page > 1_000_000 or not 1 <= size <= MAX_PAGE:
        raise InvalidRequest(f"'p' must be 0 or more and 'size' from 1 to {MAX_PAGE}.")
    return page, size


# --------------------------------------------------------------------------- users

@api
async def login(request: web.Request) -> web.Response:
    body = await _body(request)
    name, password = _text(body, "username", 64), _text(body, "password")
    state = accounts_state(request)
    who = (name, request.remote or "")
    state.logins.check(who, "failed logins")
    store = _store(request)
    row = await store.read(lambda t: t.User.select(t.User.id, t.User.password_hash, t.User.status)
                           .where(t.User.name == name).dicts().first())
    good = await asyncio.get_running_loop().run_in_executor(
        None, accounts.verify_password_or_dummy, password, row["password_hash"] if row else None)
    if not good or row is None:
        state.logins.record(who)
        raise AuthenticationFailed("The user name or password is wrong.", code="bad_credentials")
    if row["status"] != "active":
        raise PermissionDenied("This account is disabled.", code="account_disabled")
    state.logins.clear(who)
    lifetime = _settings(request).accounts.session_days * 86400
    uid = int(row["id"])
    ip = request.remote or ""

    def start(t: Tables) -> tuple[str, float]:
        sessions.prune_sessions(t)  # sessions that ended a day ago go; the table stays small
        return sessions.create_session(t, uid, lifetime=lifetime, client_ip=ip)

    token, expires_at = await store.write(start)
    return ok({"token": token, "expires_at": int(expires_at), "user_id": uid, "username": name})


@api
async def logout(request: web.Request) -> web.Response:
    await current_user(request)
    token = bearer(request) or ""
    await _store(request).write(lambda t: sessions.revoke_session(t, token))
    return ok(None, "Logged out.")


@api
async def register_user(request: web.Request) -> web.Response:
    s = _settings(request)
    if not s.accounts.self_registration:
        raise PermissionDenied("Self-registration is disabled on this relay; ask the operator for an account.",
                               code="registration_disabled")
    body = await _body(request)
    name, password = _text(body, "username", 64), _text(body, "password")
    state = accounts_state(request)
    ip = request.remote or ""
    state.registrations.check(ip, "registrations from your address")
    try:
        accounts.check_user_name(name)
        accounts.check_password_strength(password)
    except CliError as exc:
        raise InvalidRequest(exc.message) from None
    pw_hash = await asyncio.get_running_loop().run_in_executor(None, accounts.hash_password, password)
    group = "default" if "default" in s.groups else next(iter(s.groups), "default")

    def create(t: Tables) -> int:
        if t.User.get_or_none(t.User.name == name) is not None:
            raise UserExists("That user name is taken; choose another.")
        return int(accounts.create_user(t, name, group=group, password_hash=pw_hash).id)

    uid = await _store(request).write(create)
    state.registrations.record(ip)
    return ok({"id": uid, "username": name, "group": group}, "Registered; log in with POST /api/user/login.")


class UserExists(RelayError):
    status = 409
    kind = "conflict"
    code = "user_exists"


@api
async def user_self(request: web.Request) -> web.Response:
    me = await current_user(request)
    s = _settings(request)
    u = await _store(request).read(lambda t: t.User.select().where(t.User.id == me.id).dicts().first())
    if u is None:
        raise NotFoundError("This account no longer exists.")
    return ok({"id": u["id"], "username": u["name"], "role": u["role"], "status": u["status"], "group": u["group"],
               "quota": int(u["balance"]), "usd": _usd(int(u["balance"]), s),
               "used_quota": int(u["used_quota"]), "used_usd": _usd(int(u["used_quota"]), s),
               "request_count": int(u["request_count"]), "checkin_enabled": s.billing.checkin_enabled})


def calendar_day(at: float, zone: str | None) -> str:
    """The calendar day of ``at`` in the configured zone (the server's own when None)."""
    tz = ZoneInfo(zone) if zone else None
    return datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d")


@api
async def checkin(request: web.Request) -> web.Response:
    me = await current_user(request)
    s = _settings(request)
    if not s.billing.checkin_enabled:
        raise PermissionDenied("Daily check-in is not enabled on this relay.", code="checkin_disabled")
    state = accounts_state(request)
    low = usd_to_quota(s.billing.checkin_min_usd, s.billing.quota_per_usd)
    high = max(low, usd_to_quota(s.billing.checkin_max_usd, s.billing.quota_per_usd))
    amount = int(state.pick.between(low, high))
    day = calendar_day(state.clock(), s.billing.timezone)
    balance = await _store(request).write(lambda t: billing.checkin(t, me.id, day, amount))
    return ok({"quota": amount, "usd": _usd(amount, s), "day": day, "balance": balance,
               "balance_usd": _usd(balance, s)}, f"Checked in for {day}: +${_usd(amount, s)}.")


@api
async def redeem(request: web.Request) -> web.Response:
    me = await current_user(request)
    body = await _body(request)
    code = body.get("key", body.get("code"))
    if not isinstance(code, str) or not code.strip():
        raise InvalidRequest("Send the card code as {\"key\": \"...\"}.")
    state = accounts_state(request)
    state.redeems.check(me.id, "wrong card codes")
    key = state.card_key
    try:
        done = await _store(request).write(lambda t: cards.redeem(t, key, code, me.id, at=state.clock()))
    except cards.CardNotFound:
        state.redeems.record(me.id)
        raise
    s = _settings(request)
    return ok({"quota": done.amount, "usd": _usd(done.amount, s), "balance": done.balance,
               "balance_usd": _usd(done.balance, s), "card": done.hint},
              f"Redeemed: +${_usd(done.amount, s)}.")


# --------------------------------------------------------------------------- tokens

def _allowed_groups(me: Me, s: Settings) -> set[str]:
    return set(s.groups) if me.role == "admin" else {me.group}


@api
async def token_list(request: web.Request) -> web.Response:
    me = await current_user(request)
    page, size = _page(request)
    s, at = _settings(request), accounts_state(request).clock()
    rows = await _store(request).read(lambda t: [self_service.api_token(r, s.billing.quota_per_usd, at)
                                                 for r in self_service.list_own_tokens(t, me.id, page=page, size=size)])
    return ok(rows)


@api
async def token_get(request: web.Request) -> web.Response:
    me = await current_user(request)
    token_id = _path_id(request)
    s, at = _settings(request), accounts_state(request).clock()
    row = await _store(request).read(lambda t: self_service.api_token(self_service.own_token(t, me.id, token_id),
                                                                      s.billing.quota_per_usd, at))
    return ok(row)


def _path_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFoundError(f"You have no token with id {raw[:32]}.")
    return int(raw)


@api
async def token_create(request: web.Request) -> web.Response:
    me = await current_user(request)
    s, at = _settings(request), accounts_state(request).clock()
    fields = self_service.parse_token_fields(await _body(request), at=at, for_update=False)
    allowed = _allowed_groups(me, s)

    def create(t: Tables) -> dict[str, Any]:
        row, key = self_service.create_own_token(t, me.id, fields, allowed)
        return {**self_service.api_token(row, s.billing.quota_per_usd, at), "key": key}

    data = await _store(request).write(create)
    return ok(data, "Token created; its key is shown only this time.")


@api
async def token_update(request: web.Request) -> web.Response:
    me = await current_user(request)
    s, at = _settings(request), accounts_state(request).clock()
    body = await _body(request)
    status_only = request.query.get("status_only", "").lower() in ("1", "true", "yes")
    fields = self_service.parse_token_fields(body, at=at, for_update=True)
    allowed = _allowed_groups(me, s)
    token_id = body.get("id")

    def update(t: Tables) -> dict[str, Any]:
        row = self_service.update_own_token(t, me.id, token_id, fields, allowed, status_only=status_only)
        return self_service.api_token(row, s.billing.quota_per_usd, at)

    data = await _store(request).write(update)
    await _refresh_cache(request)
    return ok(data)


@api
async def token_delete(request: web.Request) -> web.Response:
    me = await current_user(request)
    token_id = _path_id(request)
    await _store(request).write(lambda t: self_service.delete_own_token(t, me.id, token_id))
    await _refresh_cache(request)
    return ok(None, f"Token {token_id} deleted.")


async def _refresh_cache(request: web.Request) -> None:
    """A token disabled or deleted here is refused by this server at once, not at the next
    poll of the change counter (other instances still see it within their poll interval)."""
    await asyncio.get_running_loop().run_in_executor(None, _store(request).cache.load_now)


# --------------------------------------------------------------------------- logs

def _timestamp(request: web.Request, key: str) -> float | None:
    raw = request.query.get(key)
    if raw in (None, "", "0"):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(f"'{key}' must be a unix time in seconds.") from None
    if not 0 <= value < 2**40:
        raise InvalidRequest(f"'{key}' must be a unix time in seconds.")
    return value


@api
async def log_self(request: web.Request) -> web.Response:
    me = await current_user(request)
    page, size = _page(request)
    start, end = _timestamp(request, "start_timestamp"), _timestamp(request, "end_timestamp")
    model = request.query.get("model_name") or request.query.get("model") or None
    token_name = request.query.get("token_name") or None
    qpu = _settings(request).billing.quota_per_usd
    items, total = await _store(request).read(lambda t: self_service.own_logs(
        t, me.id, page=page, size=size, start=start, end=end, model=model, token_name=token_name, quota_per_usd=qpu))
    return ok({"items": items, "total": total, "page": page, "page_size": size})


async def unknown(request: web.Request) -> web.Response:
    return failure(404, f"There is no endpoint {request.method} {request.path} on this relay.")
