"""Repository for long-running generation tasks (Midjourney, Suno, video).

A task's life in the database, each step one writer-thread operation:

    create    hold placed and row written together (status SUBMITTING, no upstream id yet)
    accept    the upstream took it: channel, upstream id and key fingerprint recorded
    record    a poll's news (status, progress, result); a terminal status closes the task
    finish    close once (a conditional UPDATE on ``is_open``) and, in the same
              transaction, settle the hold: charge the price on success, release it
              (ledger kind ``release``) on failure or deadline

Because closing is conditional, two pollers (two instances, or a poll racing the deadline)
can never bill a task twice.  Client polls read rows here; they never reach an upstream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .billing import HoldTicket, place_hold, settle_hold
from .tables import Tables

SUBMITTING = "SUBMITTING"   # hold taken, upstream not (yet) confirmed
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
TERMINAL = frozenset({SUCCESS, FAILURE})
STATUSES = ("SUBMITTING", "NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS", "MODAL", "SUCCESS", "FAILURE")


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: int
    task_id: str
    platform: str
    action: str
    user_id: int
    token_id: int | None
    token_name: str
    token_limited: bool
    model: str
    upstream_model: str
    channel: str
    key_fp: str
    upstream_id: str
    parent_id: str | None
    status: str
    progress: int
    fail_reason: str
    request: dict[str, Any]
    result: dict[str, Any]
    seconds: int
    quota: int
    hold_id: str
    is_open: bool
    notify_hook: str
    hook_status: str
    client_ip: str
    submit_time: float
    start_time: float | None
    finish_time: float | None
    deadline_at: float
    next_poll_at: float
    poll_failures: int
    last_error: str

    def view(self) -> dict[str, Any]:
        """A plain dict for the pure answer shapes (relaykit.dialects.tasks)."""
        return dataclasses.asdict(self)

    @property
    def ticket(self) -> HoldTicket:
        return HoldTicket(self.hold_id, self.user_id, self.token_id, self.token_limited, self.quota)


def _loads(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _dumps(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()


def _record(row: Any) -> TaskRecord:
    return TaskRecord(
        id=int(row.id), task_id=row.task_id, platform=row.platform, action=row.action, user_id=int(row.user_id),
        token_id=row.token_id, token_name=row.token_name, token_limited=bool(row.token_limited), model=row.model,
        upstream_model=row.upstream_model, channel=row.channel, key_fp=row.key_fp, upstream_id=row.upstream_id,
        parent_id=row.parent_id, status=row.status, progress=int(row.progress), fail_reason=row.fail_reason,
        request=_loads(row.request), result=_loads(row.result), seconds=int(row.seconds), quota=int(row.quota),
        hold_id=row.hold_id, is_open=bool(row.is_open), notify_hook=row.notify_hook, hook_status=row.hook_status,
        client_ip=row.client_ip, submit_time=float(row.submit_time), start_time=row.start_time,
        finish_time=row.finish_time, deadline_at=float(row.deadline_at), next_poll_at=float(row.next_poll_at),
        poll_failures=int(row.poll_failures), last_error=row.last_error)


# --------------------------------------------------------------------------- writes (writer thread)

def create(t: Tables, *, task_id: str, platform: str, action: str, user_id: int, token_id: int | None,
           token_name: str, token_limited: bool, model: str, quota: int, request: dict[str, Any],
           deadline_at: float, now: float, parent_id: str | None = None, seconds: int = 0,
           notify_hook: str = "", client_ip: str = "") -> TaskRecord:
    """Reserve the task's price and write its row, together.  Raises InsufficientQuota (or
    PermissionDenied for a disabled account) and then writes nothing."""
    hold_id = "task-" + task_id
    place_hold(t, request_id=hold_id, user_id=user_id, token_id=token_id, token_limited=token_limited,
               amount=quota, model=model)
    row = t.Task.create(task_id=task_id, platform=platform, action=action, user_id=user_id, token_id=token_id,
                        token_name=token_name[:128], token_limited=token_limited, model=model, parent_id=parent_id,
                        status=SUBMITTING, request=_dumps(request), seconds=seconds, quota=quota, hold_id=hold_id,
                        notify_hook=notify_hook, client_ip=client_ip[:64], submit_time=now, deadline_at=deadline_at,
                        next_poll_at=deadline_at)
    return _record(row)


def accept(t: Tables, task_id: str, *, channel: str, key_fp: str, upstream_id: str, upstream_model: str,
           status: str, next_poll_at: float) -> TaskRecord | None:
    """The upstream took the task; the poller follows it from ``next_poll_at``."""
    t.Task.update(channel=channel, key_fp=key_fp, upstream_id=upstream_id, upstream_model=upstream_model,
                  status=status, next_poll_at=next_poll_at).where(
        (t.Task.task_id == task_id) & (t.Task.is_open == True)).execute()  # noqa: E712
    return get(t, task_id)


def record(t: Tables, task_id: str, *, status: str, progress: int, result: dict[str, Any] | None,
           fail_reason: str, now: float, next_poll_at: float) -> TaskRecord | None:
    """Store a poll's news.  A terminal status closes the task and settles its hold; the
    record is returned only when this call closed it (the caller then sends the hook)."""
    row = t.Task.get_or_none(t.Task.task_id == task_id)
    if row is None or not row.is_open:
        return None
    merged = {**_loads(row.result), **(result or {})}
    if status in TERMINAL:
        return finish(t, task_id, success=status == SUCCESS, reason=fail_reason, now=now, result=merged,
                      progress=100 if status == SUCCESS else progress)
    fields: dict[Any, Any] = {t.Task.status: status, t.Task.progress: max(int(row.progress), progress),
                              t.Task.result: _dumps(merged), t.Task.next_poll_at: next_poll_at,
                              t.Task.poll_failures: 0, t.Task.last_error: ""}
    if row.start_time is None and status in ("IN_PROGRESS", "MODAL"):
        fields[t.Task.start_time] = now
    t.Task.update(fields).where((t.Task.id == row.id) & (t.Task.is_open == True)).execute()  # noqa: E712
    return None


def poll_failed(t: Tables, task_id: str, *, error: str, next_poll_at: float) -> int:
    """A poll that got no answer: count it and wait longer (the poller's backoff)."""
    t.Task.update(poll_failures=t.Task.poll_failures + 1, last_error=error[:255], next_poll_at=next_poll_at).where(
        (t.Task.task_id == task_id) & (t.Task.is_open == True)).execute()  # noqa: E712
    row = t.Task.get_or_none(t.Task.task_id == task_id)
    return int(row.poll_failures) if row else 0


def finish(t: Tables, task_id: str, *, success: bool, reason: str, now: float,
           result: dict[str, Any] | None = None, progress: int | None = None,
           log_status: int | None = None) -> TaskRecord | None:
    """Close an open task exactly once and settle its hold in the same transaction.

    Success charges the held price; anything else releases the hold (a ``release`` row in
    the ledger, nothing charged).  Returns None when the task was already closed.
    """
    fields: dict[Any, Any] = {t.Task.is_open: False, t.Task.status: SUCCESS if success else FAILURE,
                              t.Task.finish_time: now, t.Task.fail_reason: "" if success else reason[:2000],
                              t.Task.next_poll_at: 0}
    if result is not None:
        fields[t.Task.result] = _dumps(result)
    if progress is not None:
        fields[t.Task.progress] = progress
    closed = t.Task.update(fields).where((t.Task.task_id == task_id) & (t.Task.is_open == True)).execute()  # noqa: E712
    if closed != 1:
        return None
    rec = get(t, task_id)
    assert rec is not None
    actual = rec.quota if success else 0
    settle_hold(t, rec.ticket, actual, {
        "request_id": rec.hold_id, "user_id": rec.user_id, "token_id": rec.token_id, "token_name": rec.token_name,
        "model": rec.model, "upstream_model": rec.upstream_model, "channel": rec.channel,
        "dialect": rec.platform, "quota": actual, "latency_ms": int(max(0.0, now - rec.submit_time) * 1000),
        "status": 200 if success else (log_status or 502), "error": "" if success else reason[:255],
        "client_ip": rec.client_ip, "created_at": now,
    })
    return rec


def follow_again(t: Tables, now: float) -> int:
    """At start: every open task that reached an upstream is polled right away."""
    return int(t.Task.update(next_poll_at=now).where(
        (t.Task.is_open == True) & (t.Task.upstream_id != "")).execute())  # noqa: E712


def claim_due(t: Tables, *, now: float, lease: float, limit: int) -> list[TaskRecord]:
    """Open tasks whose next poll is due, each claimed for ``lease`` seconds by a
    conditional UPDATE so that two pollers never poll the same task at once."""
    rows = list(t.Task.select().where((t.Task.is_open == True) & (t.Task.upstream_id != "")  # noqa: E712
                                      & (t.Task.next_poll_at <= now))
                .order_by(t.Task.next_poll_at).limit(limit))
    claimed = []
    for row in rows:
        got = t.Task.update(next_poll_at=now + lease).where(
            (t.Task.id == row.id) & (t.Task.next_poll_at == row.next_poll_at)).execute()
        if got == 1:
            claimed.append(_record(row))
    return claimed


def overdue(t: Tables, *, now: float, orphaned_before: float) -> list[tuple[str, str]]:
    """Open tasks to give up on: past their deadline, or never confirmed by an upstream
    (relaykit stopped between taking the hold and hearing the upstream's answer)."""
    rows = t.Task.select(t.Task.task_id, t.Task.deadline_at).where(
        (t.Task.is_open == True) & ((t.Task.deadline_at <= now)  # noqa: E712
                                    | ((t.Task.upstream_id == "") & (t.Task.submit_time < orphaned_before))))
    return [(r.task_id, "deadline" if r.deadline_at <= now else "orphaned") for r in rows]


def set_hook_status(t: Tables, task_id: str, status: str) -> None:
    t.Task.update(hook_status=status[:16]).where(t.Task.task_id == task_id).execute()


# --------------------------------------------------------------------------- reads

def get(t: Tables, task_id: str, user_id: int | None = None) -> TaskRecord | None:
    """One task; with ``user_id``, only that customer's (another's is as good as unknown)."""
    q = t.Task.task_id == task_id
    if user_id is not None:
        q &= t.Task.user_id == user_id
    row = t.Task.get_or_none(q)
    return _record(row) if row is not None else None


def many(t: Tables, task_ids: Iterable[str], user_id: int) -> list[TaskRecord]:
    ids = [i for i in dict.fromkeys(task_ids) if isinstance(i, str)][:1000]
    if not ids:
        return []
    rows = t.Task.select().where(t.Task.task_id.in_(ids) & (t.Task.user_id == user_id))
    found = {r.task_id: _record(r) for r in rows}
    return [found[i] for i in ids if i in found]


def by_upstream(t: Tables, channel: str, upstream_id: str, user_id: int) -> TaskRecord | None:
    row = t.Task.get_or_none((t.Task.channel == channel) & (t.Task.upstream_id == upstream_id)
                             & (t.Task.user_id == user_id))
    return _record(row) if row is not None else None


def listing(t: Tables, *, status: str | None = None, user: str | None = None, platform: str | None = None,
            limit: int = 50) -> list[dict[str, Any]]:
    """Newest first, for ``relaykit tasks list``; ``status`` "open" means every open task."""
    q = t.Task.select()
    if status == "open":
        q = q.where(t.Task.is_open == True)  # noqa: E712
    elif status:
        q = q.where(t.Task.status == status.upper())
    if user:
        q = q.where(t.Task.user_id.in_(t.User.select(t.User.id).where(t.User.name == user)))
    if platform:
        q = q.where(t.Task.platform == platform)
    rows = [summary(_record(row)) for row in q.order_by(t.Task.id.desc()).limit(limit)]
    names = dict(t.User.select(t.User.id, t.User.name).where(
        t.User.id.in_({r["user_id"] for r in rows})).tuples()) if rows else {}
    for r in rows:
        r["user"] = names.get(r["user_id"], "")
    return rows


def summary(rec: TaskRecord) -> dict[str, Any]:
    """What an operator sees (never a key; the upstream key only as its fingerprint)."""
    return {"task_id": rec.task_id, "platform": rec.platform, "action": rec.action, "model": rec.model,
            "user_id": rec.user_id, "token_name": rec.token_name, "channel": rec.channel,
            "upstream_id": rec.upstream_id, "status": rec.status, "progress": rec.progress,
            "open": rec.is_open, "quota": rec.quota, "fail_reason": rec.fail_reason,
            "submit_time": rec.submit_time, "finish_time": rec.finish_time, "deadline_at": rec.deadline_at,
            "poll_failures": rec.poll_failures, "last_error": rec.last_error, "hook_status": rec.hook_status,
            "parent_id": rec.parent_id, "seconds": rec.seconds}


def detail(t: Tables, task_id: str) -> dict[str, Any] | None:
    """``relaykit tasks show``: the summary, the request and result, and the money trail."""
    rec = get(t, task_id)
    if rec is None:
        return None
    d = summary(rec)
    user = t.User.get_or_none(t.User.id == rec.user_id)
    d["user"] = user.name if user else ""
    d["request"] = rec.request
    d["result"] = rec.result
    d["hold_open"] = t.Hold.select().where(t.Hold.request_id == rec.hold_id).exists()
    d["ledger"] = [{"kind": r.kind, "amount": int(r.amount), "note": r.note, "created_at": r.created_at}
                   for r in t.Ledger.select().where(t.Ledger.request_id == rec.hold_id).order_by(t.Ledger.id)]
    return d
