"""Repository for money: holds, settlement, top-ups, recovery and the audit.

Every balance change is one conditional UPDATE plus a ledger row in the same transaction
(RELIABILITY §2.2).  The invariant these functions keep, and ``audit`` proves, is
``balance == sum(ledger.amount) - sum(open holds)`` for every user.

A hold moves quota out of the balance before the request is forwarded; settlement puts
the hold back and charges the actual cost in one step, so the balance changes by
``hold - actual``.  When the actual cost exceeds the hold (the estimate was short) the
difference is taken anyway: the overdraft is bounded by one request's estimation error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import peewee as pw

from ..errors import InsufficientQuota, NotFoundError, PermissionDenied, RelayError
from .accounts import bump_changes
from .hotsql import flat, run
from .tables import Tables, now


@dataclass(frozen=True, slots=True)
class HoldTicket:
    request_id: str
    user_id: int
    token_id: int | None
    token_limited: bool
    amount: int


@flat
def place_hold(t: Tables, *, request_id: str, user_id: int, token_id: int | None, token_limited: bool,
               amount: int, model: str) -> HoldTicket:
    """Reserve ``amount``; raise InsufficientQuota without changing anything when it does not fit."""
    q = t.sql
    changed = run(t.db, q.hold_user, [amount, user_id, "active", amount])
    if changed != 1:
        user = t.User.get_or_none(t.User.id == user_id)
        if user is None or user.status != "active":
            # the database may know before the cache does (a CLI disable a moment ago)
            raise PermissionDenied("The account this API key belongs to is disabled.", code="account_disabled")
        raise InsufficientQuota("Your balance is too low for this request; top up and try again.")
    if token_limited:
        if run(t.db, q.hold_token, [amount, token_id, amount]) != 1:
            # raising rolls back the savepoint, so the user update above is undone too
            raise InsufficientQuota("This token's quota is used up; raise its quota or use another token.")
    run(t.db, q.hold_insert, [request_id, user_id, token_id, token_limited, amount, model, now()])
    return HoldTicket(request_id, user_id, token_id, token_limited, amount)


@flat
def settle_hold(t: Tables, ticket: HoldTicket, actual: int, log_row: dict[str, Any] | None) -> int:
    """Close the hold, charge ``actual`` and write the ledger entry and the request log row.

    Idempotent per request id: a second settlement of the same request finds no hold and
    changes nothing (the unique (kind, request_id) index would refuse it anyway).
    """
    q = t.sql
    if run(t.db, q.hold_delete, [ticket.request_id]) != 1:
        return 0
    delta = ticket.amount - actual
    run(t.db, q.settle_user, [delta, actual, 1, ticket.user_id])
    if ticket.token_limited:
        run(t.db, q.settle_token_limited, [delta, actual, ticket.token_id])
    elif ticket.token_id is not None:
        run(t.db, q.settle_token_used, [actual, ticket.token_id])
    stamp = now()
    if actual:
        run(t.db, q.ledger_insert, [ticket.user_id, "charge", -actual, ticket.request_id,
                                    str((log_row or {}).get("model", ""))[:255], stamp])
    else:
        run(t.db, q.ledger_insert, [ticket.user_id, "release", 0, ticket.request_id,
                                    f"hold of {ticket.amount} released, nothing charged", stamp])
    if log_row is not None:
        row = {**q.log_defaults, "created_at": stamp, **log_row}
        run(t.db, q.log_insert, [row[f] for f in q.log_fields])
    return actual


def release_stale_holds(t: Tables, older_than: float | None = None) -> int:
    """Release holds left open by a crash (all of them when ``older_than`` is None).

    Each release is recorded in the ledger with amount 0: the money never left the user,
    it only comes back from reservation.
    """
    # The hold of a long-running task that is still open is not stale: the task poller
    # follows the task again after a restart and settles or releases it (store/tasks.py).
    following = t.Task.select(t.Task.hold_id).where(t.Task.is_open == True)  # noqa: E712
    q = t.Hold.select().where(t.Hold.request_id.not_in(following))
    if older_than is not None:
        q = q.where(t.Hold.created_at < now() - older_than)
    count = 0
    for hold in list(q):
        with t.db.atomic():
            if t.Hold.delete().where(t.Hold.request_id == hold.request_id).execute() != 1:
                continue
            t.User.update(balance=t.User.balance + hold.amount).where(t.User.id == hold.user_id).execute()
            if hold.token_limited:
                t.Token.update(remain_quota=t.Token.remain_quota + hold.amount).where(
                    t.Token.id == hold.token_id).execute()
            try:
                with t.db.atomic():
                    t.Ledger.create(user=hold.user_id, kind="release", amount=0, request_id=hold.request_id,
                                    note=f"hold of {hold.amount} released after restart")
            except pw.IntegrityError:
                pass
            count += 1
    return count


def topup(t: Tables, user_name: str, amount: int, *, kind: str = "topup", note: str = "") -> int:
    user = t.User.get_or_none(t.User.name == user_name)
    if user is None:
        raise NotFoundError(f"There is no user named '{user_name}'.")
    t.User.update(balance=t.User.balance + amount).where(t.User.id == user.id).execute()
    t.Ledger.create(user=user.id, kind=kind, amount=amount, note=note[:255])
    bump_changes(t)
    return int(t.User.get_by_id(user.id).balance)


@dataclass(frozen=True, slots=True)
class AuditLine:
    user: str
    balance: int
    ledger_sum: int
    open_holds: int

    @property
    def ok(self) -> bool:
        return self.balance == self.ledger_sum - self.open_holds


def audit(t: Tables) -> list[AuditLine]:
    ledger = dict(t.Ledger.select(t.Ledger.user, pw.fn.SUM(t.Ledger.amount)).group_by(t.Ledger.user).tuples())
    holds = dict(t.Hold.select(t.Hold.user, pw.fn.SUM(t.Hold.amount)).group_by(t.Hold.user).tuples())
    return [AuditLine(u.name, int(u.balance), int(ledger.get(u.id) or 0), int(holds.get(u.id) or 0))
            for u in t.User.select().order_by(t.User.id)]


def ledger_entries(t: Tables, user_id: int, limit: int = 20) -> list[dict[str, Any]]:
    rows = t.Ledger.select().where(t.Ledger.user == user_id).order_by(t.Ledger.id.desc()).limit(limit)
    return [{"kind": r.kind, "amount": int(r.amount), "request_id": r.request_id, "note": r.note,
             "created_at": r.created_at} for r in rows]


class AlreadyDone(RelayError):
    """A once-only money operation (a day's check-in, a refund) already happened."""

    status = 409
    kind = "conflict"
    code = "already_done"


def checkin(t: Tables, user_id: int, day: str, amount: int) -> int:
    """Credit the daily check-in bonus once per user and calendar ``day`` (YYYY-MM-DD).

    The ledger row comes first: its reference ``checkin:<user>:<day>`` is unique, so a
    second check-in that day fails at the database and nothing is credited.
    """
    try:
        with t.db.atomic():
            t.Ledger.create(user=user_id, kind="checkin", amount=amount, request_id=f"checkin:{user_id}:{day}",
                            note=f"daily check-in {day}")
    except pw.IntegrityError:
        raise AlreadyDone("You have already checked in today; come back tomorrow.", code="already_checked_in") from None
    if t.User.update(balance=t.User.balance + amount).where(t.User.id == user_id).execute() != 1:
        raise NotFoundError("The customer to credit does not exist.")
    return int(t.User.get_by_id(user_id).balance)


def refund(t: Tables, request_id: str, amount: int | None = None, *, note: str = "") -> int:
    """Give back (part of) a request's charge, exactly once, never more than was charged.

    Returns the amount refunded.  The unique (kind, request_id) index makes a second
    refund of the same request fail at the database even if this check were skipped.
    """
    charge = t.Ledger.get_or_none((t.Ledger.kind == "charge") & (t.Ledger.request_id == request_id))
    if charge is None:
        raise NotFoundError(f"No charge was recorded for request {request_id}.")
    charged = -int(charge.amount)
    give = charged if amount is None else min(int(amount), charged)
    if give <= 0:
        raise InvalidRefund("A refund must be a positive amount.")
    try:
        with t.db.atomic():
            t.Ledger.create(user=charge.user_id, kind="refund", amount=give, request_id=request_id,
                            note=(note or f"refund of {request_id}")[:255])
    except pw.IntegrityError:
        raise AlreadyDone(f"Request {request_id} has already been refunded.", code="already_refunded") from None
    t.User.update(balance=t.User.balance + give, used_quota=t.User.used_quota - give).where(
        t.User.id == charge.user_id).execute()
    return give


class InvalidRefund(RelayError):
    status = 400
    kind = "invalid_request"
    code = "invalid_refund"


def adjust(t: Tables, user_name: str, amount: int, *, note: str) -> int:
    """An operator's correction (either sign).  A debit never takes a balance below zero."""
    user = t.User.get_or_none(t.User.name == user_name)
    if user is None:
        raise NotFoundError(f"There is no user named '{user_name}'.")
    q = t.User.update(balance=t.User.balance + amount).where(t.User.id == user.id)
    if amount < 0:
        q = q.where(t.User.balance >= -amount)
    if q.execute() != 1:
        raise InsufficientQuota(f"The balance of '{user_name}' is smaller than the debit.")
    t.Ledger.create(user=user.id, kind="adjust", amount=amount, note=note[:255])
    return int(t.User.get_by_id(user.id).balance)
