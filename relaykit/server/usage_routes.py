"""Usage endpoints for relay tokens (SPEC §3 "Account"): ``GET /v1/usage`` and the two
OpenAI-era dashboard endpoints that third-party chat UIs still read.

They authenticate like every relay endpoint (errors in the middleware's default OpenAI
shape) and report on the calling token: its spend, and for the subscription its limit.  A
limited token's limit is its own quota; an unlimited token's is what the account can still
spend.  Dates are calendar days in ``billing.timezone``; ``end_date`` is exclusive, as
OpenAI's was (the same date for both means that one day).  Aggregation runs in SQL per
15-minute bucket and is folded into days here, so any time zone (including DST and
half-hour offsets) is exact.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from ..errors import InvalidRequest
from ..settings import Settings
from ..store import self_service
from ..store.tables import Tables
from .openai_routes import authenticate

MAX_DAYS = 366


def register(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1/usage", usage)
    r.add_get("/v1/dashboard/billing/usage", billing_usage)
    r.add_get("/v1/dashboard/billing/subscription", billing_subscription)
    r.add_get("/dashboard/billing/usage", billing_usage)  # clients whose base URL has no /v1
    r.add_get("/dashboard/billing/subscription", billing_subscription)


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json")


def _zone(s: Settings) -> ZoneInfo | None:
    return ZoneInfo(s.billing.timezone) if s.billing.timezone else None


def _midnight(d: date, tz: ZoneInfo | None) -> float:
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


def _day(value: str | None, key: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{key}' must be a date like 2025-01-31.") from None


def date_range(query: Any, tz: ZoneInfo | None, today: date) -> tuple[date, date]:
    """[start, end) in days; defaults: the first of this month to tomorrow."""
    start = _day(query.get("start_date"), "start_date") or today.replace(day=1)
    end = _day(query.get("end_date"), "end_date") or today + timedelta(days=1)
    if end == start:
        end = start + timedelta(days=1)
    if end < start:
        raise InvalidRequest("'end_date' must not be before 'start_date'.")
    if (end - start).days > MAX_DAYS:
        raise InvalidRequest(f"Ask for at most {MAX_DAYS} days at a time.")
    return start, end


async def _collect(request: web.Request) -> tuple[Any, Any, Settings, date, date, dict[tuple[str, str], list[int]]]:
    svc, caller = await authenticate(request)
    s = svc.settings
    tz = _zone(s)
    start, end = date_range(request.query, tz, datetime.now(tz).date())
    since, until = _midnight(start, tz), _midnight(end, tz)
    uid, tid = caller.user.id, caller.token.id
    buckets = await svc.store.read(lambda t: self_service.usage_buckets(t, user_id=uid, token_id=tid,
                                                                        since=since, until=until))
    agg: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for at, model, n, prompt, completion, quota in buckets:
        day = datetime.fromtimestamp(at, tz).strftime("%Y-%m-%d")
        row = agg[(day, model)]
        row[0] += n
        row[1] += prompt
        row[2] += completion
        row[3] += quota
    return svc, caller, s, start, end, agg


def _line(s: Settings, n: int, prompt: int, completion: int, quota: int) -> dict[str, Any]:
    return {"requests": n, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "quota": quota,
            "cost_usd": round(quota / s.billing.quota_per_usd, 6)}


def _fold(agg: dict[tuple[str, str], list[int]], index: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for key, vals in agg.items():
        acc = out[key[index]]
        for i, v in enumerate(vals):
            acc[i] += v
    return out


async def usage(request: web.Request) -> web.Response:
    _, caller, s, start, end, agg = await _collect(request)
    total = [sum(v[i] for v in agg.values()) for i in range(4)]
    return _json({
        "object": "usage", "token_id": caller.token.id, "token_name": caller.token.name,
        "start_date": start.isoformat(), "end_date": end.isoformat(), "timezone": s.billing.timezone or "local",
        "total_cost_usd": round(total[3] / s.billing.quota_per_usd, 6), "total_quota": total[3],
        "total_tokens": total[1] + total[2], "prompt_tokens": total[1], "completion_tokens": total[2],
        "requests": total[0],
        "by_day": [{"date": d, **_line(s, *v)} for d, v in sorted(_fold(agg, 0).items())],
        "by_model": [{"model": m, **_line(s, *v)} for m, v in sorted(_fold(agg, 1).items())],
    })


async def billing_usage(request: web.Request) -> web.Response:
    """OpenAI's retired ``/dashboard/billing/usage``: costs in US cents."""
    _, _, s, start, end, agg = await _collect(request)
    tz = _zone(s)
    cents = 100 / s.billing.quota_per_usd
    days: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (day, model), vals in sorted(agg.items()):
        days[day].append({"name": model, "cost": round(vals[3] * cents, 6)})
    daily = [{"timestamp": int(_midnight(date.fromisoformat(d), tz)), "line_items": items}
             for d, items in sorted(days.items())]
    total = sum(v[3] for v in agg.values())
    return _json({"object": "list", "total_usage": round(total * cents, 6), "daily_costs": daily,
                  "start_date": start.isoformat(), "end_date": end.isoformat()})


async def billing_subscription(request: web.Request) -> web.Response:
    """OpenAI's retired ``/dashboard/billing/subscription``: dashboards show
    ``hard_limit_usd - total_usage/100`` as what is left."""
    svc, caller = await authenticate(request)
    s = svc.settings
    tid, uid = caller.token.id, caller.user.id

    def load(t: Tables) -> tuple[bool, int, int, float | None, int]:
        unlimited, remain, used, expires_at = self_service.token_counters(t, tid)
        balance = int(t.User.get_by_id(uid).balance)
        return unlimited, remain, used, expires_at, balance

    unlimited, remain, used, expires_at, balance = await svc.store.read(load)
    available = min(balance, remain) if not unlimited else balance
    limit = round((available + used) / s.billing.quota_per_usd, 6)
    return _json({"object": "billing_subscription", "has_payment_method": True, "soft_limit_usd": limit,
                  "hard_limit_usd": limit, "system_hard_limit_usd": limit,
                  "access_until": int(expires_at) if expires_at else 0,
                  "plan": {"title": caller.group, "id": caller.group}})
