"""Repository behind the customers' self-service API: their own tokens, their own request
logs, and usage aggregates for the usage endpoints.

Every function takes the owner's user id and filters by it in SQL, so a customer can
never reach another customer's rows, whatever id they send.  Token fields a customer may
write are parsed here from the request body (the seed's one-api field names); anything
else in the body (``role``, ``quota``, ``user_id``, ``used_quota``, ``key``...) is ignored,
and a ``group`` the customer may not use is refused.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import peewee as pw

from ..errors import InvalidRequest, NotFoundError, PermissionDenied
from .accounts import bump_changes, create_token
from .tables import Tables

MAX_TOKENS_PER_USER = 200
MAX_QUOTA = 10**15
VISIBLE = ("active", "disabled", "revoked")  # "deleted" tokens are gone for the customer
STATUS_CODE = {"active": 1, "disabled": 2, "revoked": 2, "expired": 3, "exhausted": 4}


@dataclass(frozen=True, slots=True)
class TokenFields:
    """The writable part of a token, parsed and checked; None means 'not given'."""

    name: str | None = None
    unlimited: bool | None = None
    remain_quota: int | None = None
    expires_at: float | None = None
    expires_given: bool = False
    models: list[str] | None = None
    ips: list[str] | None = None
    group: str | None = None
    group_given: bool = False
    rpm: int | None = None
    tpm: int | None = None
    limits_given: frozenset[str] = frozenset()
    status: str | None = None


def _int(body: dict[str, Any], key: str, *, minimum: int, maximum: int) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        raise InvalidRequest(f"'{key}' must be a whole number from {minimum} to {maximum}.")
    return v


def _names(body: dict[str, Any], key: str, what: str) -> list[str] | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, str):
        items = [p.strip() for p in v.split(",") if p.strip()]
    elif isinstance(v, list) and all(isinstance(p, str) for p in v):
        items = [p.strip() for p in v if p.strip()]
    else:
        raise InvalidRequest(f"'{key}' must be a comma separated string or a list of {what}.")
    if len(items) > 100 or any(len(p) > 128 or "," in p for p in items):
        raise InvalidRequest(f"'{key}' may list at most 100 {what} of up to 128 characters each.")
    return items


def parse_token_fields(body: Any, *, at: float, for_update: bool) -> TokenFields:
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 128
                             or not name.isprintable()):
        raise InvalidRequest("'name' must be 1 to 128 printable characters.")
    if name is None and not for_update:
        raise InvalidRequest("'name' is required.")
    unlimited = body.get("unlimited_quota")
    if unlimited is not None and not isinstance(unlimited, bool):
        raise InvalidRequest("'unlimited_quota' must be true or false.")
    remain = _int(body, "remain_quota", minimum=0, maximum=MAX_QUOTA)
    expires_given = "expired_time" in body
    expires_at: float | None = None
    if expires_given:
        raw = body.get("expired_time")
        if raw is None or raw == -1 or raw == 0:
            expires_at = None
        elif isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != raw or raw > 2**40:
            raise InvalidRequest("'expired_time' must be a unix time in seconds, or -1 for never.")
        elif raw <= at:
            raise InvalidRequest("'expired_time' is in the past; give a future unix time or -1 for never.")
        else:
            expires_at = float(raw)
    models = _names(body, "models", "model names")
    ips = _names(body, "subnet", "IP ranges")
    if ips is None:
        ips = _names(body, "allow_ips", "IP ranges")
    for cidr in ips or ():
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidRequest(f"'{cidr}' is not an IP address or CIDR range.") from None
    group_given = "group" in body
    group = body.get("group")
    if group_given and group is not None and not isinstance(group, str):
        raise InvalidRequest("'group' must be a group name.")
    limits = frozenset(k for k in ("rpm", "tpm") if k in body)
    rpm = _int(body, "rpm", minimum=1, maximum=10**9)
    tpm = _int(body, "tpm", minimum=1, maximum=10**12)
    status: str | None = None
    if "status" in body and for_update:
        code = body.get("status")
        if code not in (1, 2):
            raise InvalidRequest("'status' must be 1 (enabled) or 2 (disabled).")
        status = "active" if code == 1 else "disabled"
    return TokenFields(name.strip() if isinstance(name, str) else None, unlimited, remain, expires_at, expires_given,
                       models, ips, group or None, group_given, rpm, tpm, limits, status)


def api_token(row: Any, quota_per_usd: int, at: float) -> dict[str, Any]:
    """A token in the seed's shape; the key is masked (the plaintext exists only at creation)."""
    state = row.status
    if state == "active" and row.expires_at is not None and row.expires_at <= at:
        state = "expired"
    elif state == "active" and not row.unlimited and row.remain_quota <= 0:
        state = "exhausted"
    return {
        "id": row.id, "name": row.name, "key": row.key_hint, "status": STATUS_CODE.get(state, 2), "state": state,
        "created_time": int(row.created_at),
        "expired_time": -1 if row.expires_at is None else int(row.expires_at),
        "unlimited_quota": bool(row.unlimited), "remain_quota": 0 if row.unlimited else int(row.remain_quota),
        "used_quota": int(row.used_quota),
        "remain_usd": None if row.unlimited else round(int(row.remain_quota) / quota_per_usd, 6),
        "used_usd": round(int(row.used_quota) / quota_per_usd, 6),
        "models": ",".join(m for m in row.models.split(",") if m),
        "subnet": ",".join(i for i in row.ips.split(",") if i),
        "group": row.group or "", "rpm": row.rpm, "tpm": row.tpm,
    }


def _check_group(f: TokenFields, allowed_groups: set[str]) -> None:
    if f.group_given and f.group is not None and f.group not in allowed_groups:
        raise PermissionDenied(f"You may not use the group '{f.group}' for a token.", code="group_not_allowed")


def own_token(t: Tables, user_id: int, token_id: Any) -> Any:
    if isinstance(token_id, bool) or not isinstance(token_id, int):
        raise InvalidRequest("'id' must be a token id (a whole number).")
    row = t.Token.get_or_none((t.Token.id == token_id) & (t.Token.user == user_id)
                              & t.Token.status.in_(VISIBLE))
    if row is None:  # the same answer for "someone else's" and "no such token"
        raise NotFoundError(f"You have no token with id {token_id}.")
    return row


def list_own_tokens(t: Tables, user_id: int, *, page: int, size: int) -> list[Any]:
    return list(t.Token.select().where((t.Token.user == user_id) & t.Token.status.in_(VISIBLE))
                .order_by(t.Token.id.desc()).offset(page * size).limit(size))


def create_own_token(t: Tables, user_id: int, f: TokenFields, allowed_groups: set[str]) -> tuple[Any, str]:
    _check_group(f, allowed_groups)
    live = t.Token.select().where((t.Token.user == user_id) & t.Token.status.in_(VISIBLE)).count()
    if live >= MAX_TOKENS_PER_USER:
        raise PermissionDenied(f"You have {live} tokens, the most allowed; delete one first.", code="too_many_tokens")
    unlimited = f.unlimited if f.unlimited is not None else f.remain_quota is None
    return create_token(t, user_id=user_id, name=f.name or "token", quota=None if unlimited else (f.remain_quota or 0),
                        expires_at=f.expires_at, group=f.group, models=f.models or [], ips=f.ips or [],
                        rpm=f.rpm, tpm=f.tpm)


def update_own_token(t: Tables, user_id: int, token_id: Any, f: TokenFields, allowed_groups: set[str], *,
                     status_only: bool) -> Any:
    row = own_token(t, user_id, token_id)
    changes: dict[str, Any] = {}
    if f.status is not None:
        if row.status == "revoked":
            raise PermissionDenied("This token was revoked by the operator and cannot be changed.",
                                   code="token_revoked")
        changes["status"] = f.status
    if not status_only:
        if row.status == "revoked":
            raise PermissionDenied("This token was revoked by the operator and cannot be changed.",
                                   code="token_revoked")
        _check_group(f, allowed_groups)
        if f.name is not None:
            changes["name"] = f.name
        if f.unlimited is not None:
            changes["unlimited"] = f.unlimited
        if f.remain_quota is not None:
            changes["remain_quota"] = f.remain_quota
            if f.unlimited is None:
                changes["unlimited"] = False
        if f.expires_given:
            changes["expires_at"] = f.expires_at
        if f.models is not None:
            changes["models"] = ",".join(f.models)
        if f.ips is not None:
            changes["ips"] = ",".join(f.ips)
        if f.group_given:
            changes["group"] = f.group
        if "rpm" in f.limits_given:
            changes["rpm"] = f.rpm
        if "tpm" in f.limits_given:
            changes["tpm"] = f.tpm
    if changes:
        t.Token.update(**changes).where(t.Token.id == row.id).execute()
        bump_changes(t)
    return t.Token.get_by_id(row.id)


def delete_own_token(t: Tables, user_id: int, token_id: Any) -> None:
    row = own_token(t, user_id, token_id)
    # kept as a row (request logs refer to it) but refused everywhere and hidden from the customer
    t.Token.update(status="deleted").where(t.Token.id == row.id).execute()
    bump_changes(t)


# --------------------------------------------------------------------------- request logs

LOG_COLUMNS = ("id", "request_id", "created_at", "model", "token_name", "prompt_tokens", "completion_tokens",
               "cache_read_tokens", "cache_write_tokens", "quota", "latency_ms", "stream", "estimated", "status")


def own_logs(t: Tables, user_id: int, *, page: int, size: int, start: float | None, end: float | None,
             model: str | None, token_name: str | None, quota_per_usd: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the user's request logs (newest first) and the total matching."""
    R = t.RequestLog
    q = R.select().where(R.user_id == user_id)
    if start is not None:
        q = q.where(R.created_at >= start)
    if end is not None:
        q = q.where(R.created_at < end)
    if model:
        q = q.where(R.model == model)
    if token_name:
        q = q.where(R.token_name == token_name)
    total = q.count()
    rows = []
    for r in q.order_by(R.id.desc()).offset(page * size).limit(size):
        d = {c: getattr(r, c) for c in LOG_COLUMNS}
        d["stream"], d["estimated"] = bool(d["stream"]), bool(d["estimated"])
        d["usd"] = round(int(r.quota) / quota_per_usd, 6)
        rows.append(d)
    return rows, total


# --------------------------------------------------------------------------- usage aggregates

BUCKET_SECONDS = 900  # every time zone's offset is a multiple of 15 minutes


def usage_buckets(t: Tables, *, user_id: int, token_id: int | None, since: float,
                  until: float) -> list[tuple[int, str, int, int, int, int]]:
    """(bucket start, model, requests, prompt tokens, completion tokens, quota) per 15-minute
    bucket; the caller folds buckets into calendar days of its time zone."""
    R = t.RequestLog
    bucket: Any
    if isinstance(t.db, pw.PostgresqlDatabase):
        bucket = pw.fn.FLOOR(R.created_at / BUCKET_SECONDS)
    else:
        bucket = pw.Cast(R.created_at / BUCKET_SECONDS, "INTEGER")  # created_at > 0: truncation is floor
    q = (R.select(bucket.alias("b"), R.model, pw.fn.COUNT(R.id), pw.fn.SUM(R.prompt_tokens),
                  pw.fn.SUM(R.completion_tokens), pw.fn.SUM(R.quota))
         .where((R.user_id == user_id) & (R.created_at >= since) & (R.created_at < until)))
    if token_id is not None:
        q = q.where(R.token_id == token_id)
    q = q.group_by(bucket, R.model).tuples()
    return [(int(b) * BUCKET_SECONDS, str(m), int(n or 0), int(p or 0), int(c or 0), int(quota or 0))
            for b, m, n, p, c, quota in q]


def token_counters(t: Tables, token_id: int) -> tuple[bool, int, int, float | None]:
    """(unlimited, remain quota, used quota, expires_at) of a token."""
    row = t.Token.get_by_id(token_id)
    return bool(row.unlimited), int(row.remain_quota), int(row.used_quota), row.expires_at
