"""Precompiled SQL for the statements every relayed request runs (hold and settlement).

peewee builds SQL from Python objects on every call, which costs more than SQLite takes to
run the statement.  These statements are built once per database with peewee (so quoting
and placeholders are right for SQLite and PostgreSQL alike) and then executed with fresh
parameters.  The parameter order is the order each builder below passes its values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import peewee as pw

F = TypeVar("F", bound=Callable[..., Any])

# Distinct sentinels make each compiled statement's parameter order explicit.
_A, _B, _C = 1_000_001, 1_000_002, 1_000_003


class HotSQL:
    def __init__(self, User: Any, Token: Any, Hold: Any, Ledger: Any, RequestLog: Any) -> None:
        self.hold_user, order = User.update(balance=User.balance - _A).where(
            (User.id == _B) & (User.status == "active") & (User.balance >= _C)).sql()
        assert order == [_A, _B, "active", _C]
        self.hold_token, order = Token.update(remain_quota=Token.remain_quota - _A).where(
            (Token.id == _B) & (Token.remain_quota >= _C)).sql()
        assert order == [_A, _B, _C]
        self.hold_fields = ["request_id", "user", "token_id", "token_limited", "amount", "model", "created_at"]
        self.hold_insert = Hold.insert(**{f: None for f in self.hold_fields}).sql()[0]
        self.hold_delete, _ = Hold.delete().where(Hold.request_id == "x").sql()
        self.settle_user, order = User.update(balance=User.balance + _A, used_quota=User.used_quota + _B,
                                              request_count=User.request_count + 1).where(User.id == _C).sql()
        assert order == [_A, _B, 1, _C]
        self.settle_token_limited, order = Token.update(remain_quota=Token.remain_quota + _A,
                                                        used_quota=Token.used_quota + _B).where(Token.id == _C).sql()
        assert order == [_A, _B, _C]
        self.settle_token_used, order = Token.update(used_quota=Token.used_quota + _A).where(Token.id == _B).sql()
        assert order == [_A, _B]
        self.ledger_fields = ["user", "kind", "amount", "request_id", "note", "created_at"]
        self.ledger_insert = Ledger.insert(**{f: None for f in self.ledger_fields}).sql()[0]
        self.log_fields = [f.name for f in RequestLog._meta.sorted_fields if f.name != "id"]
        self.log_insert = RequestLog.insert(**{f: None for f in self.log_fields}).sql()[0]
        self.log_defaults = {f.name: f.default() if callable(f.default) else f.default
                             for f in RequestLog._meta.sorted_fields if f.name != "id"}


def run(db: pw.Database, sql: str, params: list[Any]) -> int:
    """Execute and return the number of rows changed.

    On SQLite straight on the driver's connection: peewee's execute_sql (query logging,
    exception wrapping, a cursor per call) cost about as much as the statement itself, six
    times per request.  Errors then arrive as sqlite3's own exception types.
    """
    if isinstance(db, pw.SqliteDatabase):
        return int(db.connection().execute(sql, params).rowcount)
    return int(db.execute_sql(sql, params).rowcount)


def flat(fn: F) -> F:
    """Mark a write operation made only of single statements: it opens no transaction or
    savepoint of its own.  Alone in a writer batch, such an operation runs between a bare
    BEGIN and COMMIT on the SQLite driver (store/writer.py) instead of inside peewee's
    transaction object, whose bookkeeping cost more than the hold's statements themselves."""
    fn.relaykit_flat = True  # type: ignore[attr-defined]
    return fn


def is_flat(fn: Callable[..., Any]) -> bool:
    return bool(getattr(getattr(fn, "func", fn), "relaykit_flat", False))  # functools.partial too
