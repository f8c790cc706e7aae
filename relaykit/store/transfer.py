"""Move a whole relaykit database to another one (``relaykit db copy``), and back up a
PostgreSQL one (``relaykit db backup`` uses SQLite's online backup API for SQLite).

The copy reads the source inside one read transaction, so what it copies is one
consistent moment even while ``serve`` keeps writing (WAL on SQLite, REPEATABLE READ on
PostgreSQL); requests settled after that moment stay in the source only, so stop ``serve``
first for a move.  The target must be empty: it is migrated, filled in one transaction
(all or nothing), its id sequences moved past the copied ids, and then both sides are
audited: every balance equals its ledger minus open holds on each side, the same users
have the same balances one for one, and every table has as many rows as in the source.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import peewee as pw

from ..errors import CliError
from .billing import AuditLine, audit
from .pg import is_postgres, redact
from .store import Store
from .tables import Tables

CHUNK = 1000
Progress = Callable[[str, int], None]  # (table, rows copied so far)


@dataclass
class CopyReport:
    source: str
    target: str
    tables: dict[str, int] = field(default_factory=dict)
    users: int = 0
    source_audit_ok: bool = False
    target_audit_ok: bool = False
    balances_match: bool = False
    counts_match: bool = False
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.source_audit_ok and self.target_audit_ok and self.balances_match and self.counts_match

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source": self.source, "target": self.target, "tables": self.tables,
                "users": self.users, "source_audit_ok": self.source_audit_ok,
                "target_audit_ok": self.target_audit_ok, "balances_match": self.balances_match,
                "counts_match": self.counts_match, "mismatches": self.mismatches,
                "seconds": round(self.seconds, 3)}


def _snapshot(store: Store) -> Any:
    """A read transaction that sees one moment and blocks no writer."""
    if is_postgres(store.db):
        return store.db.atomic(isolation_level="REPEATABLE READ")
    return store.db.atomic(lock_type="DEFERRED")


def _copied_tables(t: Tables) -> list[Any]:
    return [m for m in t.all() if m is not t.Migration]


def _rows(model: Any) -> Iterator[dict[str, Any]]:
    pk = model._meta.primary_key
    yield from model.select().order_by(pk).dicts().iterator()


def _balances(lines: list[AuditLine]) -> dict[str, int]:
    return {a.user: a.balance for a in lines}


def copy_database(source_url: str, target_url: str, *, progress: Progress | None = None) -> CopyReport:
    if source_url == target_url:
        raise CliError("--from and --to name the same database.")
    started = time.monotonic()
    report = CopyReport(redact(source_url), redact(target_url))
    src, dst = Store(source_url), Store(target_url)
    try:
        src.migrate()  # what `serve` would do at its next start; the schemas must match
        dst.migrate()
        with dst.db.connection_context():
            used = {m._meta.table_name: m.select().count() for m in _copied_tables(dst.t)
                    if m is not dst.t.Meta and m.select().limit(1).exists()}
        if used:
            raise CliError("The target database is not empty (" + ", ".join(f"{n}: {c} rows" for n, c in used.items())
                           + "); db copy only fills an empty database.")
        with src.db.connection_context(), _snapshot(src), dst.db.connection_context(), dst.db.atomic():
            source_audit = audit(src.t)
            source_counts = {m._meta.table_name: m.select().count() for m in _copied_tables(src.t)}
            for model, target in zip(_copied_tables(src.t), _copied_tables(dst.t)):
                report.tables[model._meta.table_name] = _copy_table(model, target, progress)
            _advance_sequences(dst.t)
        target_audit = dst.tx(audit)
        with dst.db.connection_context():
            target_counts = {m._meta.table_name: m.select().count() for m in _copied_tables(dst.t)}
    finally:
        src.close()
        dst.close()
    report.users = len(target_audit)
    report.source_audit_ok = all(a.ok for a in source_audit)
    report.target_audit_ok = all(a.ok for a in target_audit)
    src_bal, dst_bal = _balances(source_audit), _balances(target_audit)
    report.balances_match = src_bal == dst_bal
    report.mismatches = sorted(u for u in src_bal.keys() | dst_bal.keys() if src_bal.get(u) != dst_bal.get(u))
    report.counts_match = source_counts == target_counts
    report.seconds = time.monotonic() - started
    return report


def _copy_table(source: Any, target: Any, progress: Progress | None) -> int:
    """Stream one table's rows in primary-key order: COPY into PostgreSQL, batched
    ``executemany`` into SQLite (both far cheaper than building INSERT statements)."""
    name = target._meta.table_name
    fields = target._meta.sorted_fields
    to_db = [f.db_value for f in fields]
    rows = (source.select(*[source._meta.fields[f.name] for f in fields])
            .order_by(source._meta.primary_key).tuples().iterator())
    db = target._meta.database
    if target._meta.primary_key.name == "key":  # the small key/value table migrate already filled
        items = [dict(zip([f.name for f in fields], row)) for row in rows]
        if items:
            target.insert_many(items).on_conflict(conflict_target=[target._meta.primary_key],
                                                  update={target.value: pw.EXCLUDED.value}).execute()
        return len(items)
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    done = 0
    if is_postgres(db):
        with db.cursor().copy(f'COPY "{name}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([conv(v) for conv, v in zip(to_db, row)])
                done += 1
                if progress and done % CHUNK == 0:
                    progress(name, done)
    else:
        sql = f'INSERT INTO "{name}" ({columns}) VALUES ({", ".join("?" * len(fields))})'
        cursor = db.cursor()
        while True:
            chunk = [[conv(v) for conv, v in zip(to_db, row)] for row in itertools.islice(rows, CHUNK)]
            if not chunk:
                break
            cursor.executemany(sql, chunk)
            done += len(chunk)
            if progress:
                progress(name, done)
    if progress:
        progress(name, done)
    return done


def _advance_sequences(t: Tables) -> None:
    """PostgreSQL hands out ids from sequences; after inserting explicit ids, move each past
    the largest copied id (SQLite needs nothing: it takes MAX(rowid) + 1)."""
    if not is_postgres(t.db):
        return
    for model in _copied_tables(t):
        pk = model._meta.primary_key
        if not isinstance(pk, pw.AutoField):
            continue
        table, column = model._meta.table_name, pk.column_name
        t.db.execute_sql(
            f'SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE((SELECT MAX("{column}") FROM "{table}"), 1), '
            f'(SELECT MAX("{column}") FROM "{table}") IS NOT NULL)', (f'"{table}"', column))


def backup_postgres(url: str, path: Path) -> None:
    """``pg_dump`` in its custom format (restore with ``pg_restore``): a consistent snapshot
    taken while the relay keeps serving.  The password travels in the environment, never on
    the command line where ``ps`` would show it."""
    exe = shutil.which("pg_dump")
    if exe is None:
        raise CliError("db backup of PostgreSQL needs pg_dump (the postgresql-client package); or copy the "
                       "database to a file with: relaykit db copy --from URL --to sqlite:///PATH.")
    parts = urlsplit("postgresql://" + url.split("://", 1)[1])
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
    netloc = (f"{parts.username}@" if parts.username else "") + (parts.hostname or "")
    if parts.port:
        netloc += f":{parts.port}"
    dsn = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    done = subprocess.run([exe, "--format=custom", "--no-owner", f"--file={path}", f"--dbname={dsn}"],
                          env=env, capture_output=True, text=True, timeout=24 * 3600)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["pg_dump failed"])[0]
        path.unlink(missing_ok=True)
        raise CliError(f"The backup to {path} failed: {first.removeprefix('pg_dump: error: ')}.")
