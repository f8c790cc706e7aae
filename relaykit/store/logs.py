"""Repository for request logs: the operator's view of consumption.

Request logs are separate from the ledger: they may be pruned, the ledger never is.
"""

from __future__ import annotations

from typing import Any

import peewee as pw

from .tables import Tables, now

LOG_FIELDS = ("id", "request_id", "model", "upstream_model", "channel", "dialect", "prompt_tokens",
              "completion_tokens", "cache_read_tokens", "cache_write_tokens", "quota", "latency_ms",
              "first_byte_ms", "stream", "estimated", "status", "error", "created_at", "token_name")


def log_dict(row: Any, user_name: str) -> dict[str, Any]:
    out = {f: getattr(row, f) for f in LOG_FIELDS}
    out["stream"] = bool(out["stream"])
    out["estimated"] = bool(out["estimated"])
    out["user"] = user_name
    out["token_id"] = row.token_id
    return out


def tail(t: Tables, *, limit: int = 20, after_id: int = 0, user: str | None = None,
         token_id: int | None = None, model: str | None = None, channel: str | None = None) -> list[dict[str, Any]]:
    """Newest rows matching the filters (oldest first), or every row newer than ``after_id``."""
    q = (t.RequestLog.select(t.RequestLog, t.User.name.alias("user_name"))
         .join(t.User, pw.JOIN.LEFT_OUTER, on=(t.RequestLog.user_id == t.User.id)))
    if user:
        q = q.where(t.User.name == user)
    if token_id is not None:
        q = q.where(t.RequestLog.token_id == token_id)
    if model:
        q = q.where(t.RequestLog.model == model)
    if channel:
        q = q.where(t.RequestLog.channel == channel)
    if after_id:
        q = q.where(t.RequestLog.id > after_id).order_by(t.RequestLog.id)
        rows = list(q.objects())
    else:
        rows = list(q.order_by(t.RequestLog.id.desc()).limit(limit).objects())[::-1]
    return [log_dict(r, getattr(r, "user_name", None) or "") for r in rows]


def prune(t: Tables, older_than_seconds: float, batch: int = 5000) -> int:
    """Delete one batch of rows older than the cutoff; call until it returns 0.

    Rows are appended in time order, so the oldest are the lowest ids: each batch is read
    from the start of the table (no time index: one index less to write per request), and
    a table with nothing to prune costs one batch read.  A row logged under a clock that
    stepped back waits for the next pass."""
    cutoff = now() - older_than_seconds
    R = t.RequestLog
    ids = [i for i, at in R.select(R.id, R.created_at).order_by(R.id).limit(batch).tuples() if at < cutoff]
    if not ids:
        return 0
    return int(t.RequestLog.delete().where(t.RequestLog.id.in_(ids)).execute())


def count_older(t: Tables, older_than_seconds: float) -> int:
    return int(t.RequestLog.select().where(t.RequestLog.created_at < now() - older_than_seconds).count())


def usage(t: Tables, *, by: str, user: str | None = None, since: float | None = None,
          until: float | None = None) -> list[dict[str, Any]]:
    """Spend and tokens grouped by model, day, channel or token."""
    R = t.RequestLog
    if by == "model":
        key = R.model
    elif by == "channel":
        key = R.channel
    elif by == "token":
        key = R.token_name
    elif by == "day":
        if isinstance(t.db, pw.SqliteDatabase):
            key = pw.fn.strftime("%Y-%m-%d", R.created_at, "unixepoch")
        else:
            key = pw.fn.to_char(pw.fn.to_timestamp(R.created_at), "YYYY-MM-DD")
    else:
        raise ValueError(by)
    q = (R.select(key.alias("key"), pw.fn.COUNT(R.id).alias("requests"),
                  pw.fn.SUM(R.prompt_tokens).alias("prompt_tokens"),
                  pw.fn.SUM(R.completion_tokens).alias("completion_tokens"),
                  pw.fn.SUM(R.quota).alias("quota"))
         .join(t.User, on=(R.user_id == t.User.id)))
    if user:
        q = q.where(t.User.name == user)
    if since is not None:
        q = q.where(R.created_at >= since)
    if until is not None:
        q = q.where(R.created_at < until)
    rows = q.group_by(key).order_by(key).dicts()
    return [{by: r["key"], "requests": int(r["requests"] or 0), "prompt_tokens": int(r["prompt_tokens"] or 0),
             "completion_tokens": int(r["completion_tokens"] or 0), "quota": int(r["quota"] or 0)}
            for r in rows]
