"""Ordered, recorded schema migrations.

Each migration has a number and a name; applied ones are recorded in
``schema_migrations`` so ``relaykit db migrate`` and every start are idempotent.  New
migrations are appended, never edited.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw

from .tables import Tables

Step = Callable[[Tables], None]


def _initial(t: Tables) -> None:
    t.db.create_tables([t.User, t.Token, t.Hold, t.Ledger, t.RequestLog, t.ChannelState], safe=True)
    t.Meta.insert(key="change_counter", value=0).on_conflict_ignore().execute()


def _accounts(t: Tables) -> None:
    """Issue 4: login sessions and redemption cards."""
    t.db.create_tables([t.Session, t.Card], safe=True)


def _tasks(t: Tables) -> None:
    """Issue 7: long-running generation tasks (Midjourney, Suno, video)."""
    t.db.create_tables([t.Task], safe=True)


def _lighter_holds(t: Tables) -> None:
    """Issue 9: holds lose their user index (two WAL pages per request fewer)."""
    t.db.execute_sql('DROP INDEX IF EXISTS "hold_user_id"')


def _lighter_logs(t: Tables) -> None:
    """Issue 9: request logs keep one index, (user_id, created_at), instead of three."""
    for name in ("request_log_request_id", "request_log_user_id", "request_log_created_at"):
        t.db.execute_sql(f'DROP INDEX IF EXISTS "{name}"')
    t.db.execute_sql('CREATE INDEX IF NOT EXISTS "request_log_user_id_created_at" '
                     'ON "request_log" ("user_id", "created_at")')


def _keyed_holds(t: Tables) -> None:
    """Issue 9: holds keyed by their request id (WITHOUT ROWID on SQLite), no id column."""
    db = t.db
    db.execute_sql('ALTER TABLE "hold" RENAME TO "hold_old"')
    if not isinstance(db, pw.SqliteDatabase):  # PostgreSQL: the new key's index takes the old name
        db.execute_sql('ALTER TABLE "hold_old" RENAME CONSTRAINT "hold_pkey" TO "hold_old_pkey"')
    t.Hold.create_table(safe=False)
    columns = ", ".join(f'"{f.column_name}"' for f in t.Hold._meta.sorted_fields)
    db.execute_sql(f'INSERT INTO "hold" ({columns}) SELECT {columns} FROM "hold_old"')
    db.execute_sql('DROP TABLE "hold_old"')


MIGRATIONS: tuple[tuple[int, str, Step], ...] = (
    (1, "initial schema", _initial),
    (2, "sessions and redemption cards", _accounts),
    (3, "long-running tasks", _tasks),
    (4, "holds without a user index", _lighter_holds),
    (5, "request logs with one index", _lighter_logs),
    (6, "holds keyed by request id", _keyed_holds),
)


def migrate(t: Tables) -> list[str]:
    """Apply every pending migration; return the names applied now."""
    with t.db.atomic():
        t.db.create_tables([t.Meta, t.Migration], safe=True)
    done = {m.id for m in t.Migration.select(t.Migration.id)}
    applied: list[str] = []
    for number, name, step in MIGRATIONS:
        if number in done:
            continue
        with t.db.atomic():
            step(t)
            t.Migration.insert(id=number, name=name).on_conflict_ignore().execute()
        applied.append(name)
    return applied


def pending(t: Tables) -> list[str]:
    if not t.Migration.table_exists():
        return [name for _, name, _ in MIGRATIONS]
    done = {m.id for m in t.Migration.select(t.Migration.id)}
    return [name for number, name, _ in MIGRATIONS if number not in done]
