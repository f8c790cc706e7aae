"""peewee table definitions, built per database by a factory.

The factory keeps model classes bound to one database object instead of a module-level
proxy, so a test process can hold two stores (or the CLI and a server) without rebinding
globals.  Money columns are integers in quota units (SPEC §5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import peewee as pw

from .hotsql import HotSQL


def now() -> float:
    return time.time()


@dataclass(frozen=True)
class Tables:
    db: pw.Database
    Meta: Any
    Migration: Any
    User: Any
    Token: Any
    Hold: Any
    Ledger: Any
    RequestLog: Any
    ChannelState: Any
    Session: Any
    Card: Any
    Task: Any

    # precompiled hot-path statements; keep this field last (it has a default)
    sql: Any = None

    def all(self) -> list[Any]:
        return [self.Meta, self.Migration, self.User, self.Token, self.Hold, self.Ledger,
                self.RequestLog, self.ChannelState, self.Session, self.Card, self.Task]


def build_tables(db: pw.Database) -> Tables:
    class Base(pw.Model):
        class Meta:
            database = db
            legacy_table_names = False

    class MetaKV(Base):
        """Small key/value facts: the change counter that tells caches to reload."""
        key = pw.CharField(primary_key=True, max_length=64)
        value = pw.BigIntegerField(default=0)

        class Meta:
            table_name = "meta"

    class Migration(Base):
        id = pw.IntegerField(primary_key=True)
        name = pw.CharField(max_length=128)
        applied_at = pw.DoubleField(default=now)

        class Meta:
            table_name = "schema_migrations"

    class User(Base):
        name = pw.CharField(max_length=64, unique=True)
        group = pw.CharField(max_length=64, default="default")
        role = pw.CharField(max_length=16, default="customer")
        status = pw.CharField(max_length=16, default="active")
        balance = pw.BigIntegerField(default=0)
        used_quota = pw.BigIntegerField(default=0)
        request_count = pw.BigIntegerField(default=0)
        password_hash = pw.CharField(max_length=255, null=True)
        created_at = pw.DoubleField(default=now)

    class Token(Base):
        user = pw.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
        name = pw.CharField(max_length=128)
        key_hash = pw.CharField(max_length=64, unique=True)
        key_hint = pw.CharField(max_length=32)
        status = pw.CharField(max_length=16, default="active")
        unlimited = pw.BooleanField(default=True)
        remain_quota = pw.BigIntegerField(default=0)
        used_quota = pw.BigIntegerField(default=0)
        expires_at = pw.DoubleField(null=True)
        group = pw.CharField(max_length=64, null=True)
        models = pw.TextField(default="")   # comma separated; empty = every model of the group
        ips = pw.TextField(default="")      # comma separated CIDRs; empty = anywhere
        rpm = pw.IntegerField(null=True)
        tpm = pw.IntegerField(null=True)
        created_at = pw.DoubleField(default=now)

    class Hold(Base):
        """Quota reserved for a request in flight; released or settled exactly once.

        Keyed by the request id itself, and on SQLite stored WITHOUT ROWID: one B-tree
        where a rowid table and a unique index were two, a WAL page fewer in both of the
        request's commits (migration 6)."""
        request_id = pw.CharField(max_length=64, primary_key=True)
        # no index on user: holds live for one request and the table stays small, while an
        # index page more is written to the WAL twice per request (migration 4 drops it)
        user = pw.ForeignKeyField(User, on_delete="CASCADE", index=False)
        token_id = pw.IntegerField(null=True)
        token_limited = pw.BooleanField(default=False)
        amount = pw.BigIntegerField()
        model = pw.CharField(max_length=128, default="")
        created_at = pw.DoubleField(default=now)

        class Meta:
            without_rowid = isinstance(db, pw.SqliteDatabase)

    class Ledger(Base):
        """Append-only record of every balance change (SPEC §6.1)."""
        user = pw.ForeignKeyField(User, on_delete="CASCADE")
        kind = pw.CharField(max_length=16)  # topup, card, checkin, charge, refund, adjust, release
        amount = pw.BigIntegerField()
        request_id = pw.CharField(max_length=64, null=True)
        note = pw.CharField(max_length=255, default="")
        created_at = pw.DoubleField(default=now)

        class Meta:
            indexes = ((("kind", "request_id"), True),)

    class RequestLog(Base):
        # one index, (user_id, created_at), serves the per-user pages and usage; time-wide
        # reads (prune, CLI reports) walk the table in id order, which is time order.  Each
        # index more is a WAL page more on every request (migration 5 dropped three)
        request_id = pw.CharField(max_length=64)
        user_id = pw.IntegerField()
        token_id = pw.IntegerField(null=True)
        token_name = pw.CharField(max_length=128, default="")
        model = pw.CharField(max_length=128)
        upstream_model = pw.CharField(max_length=128, default="")
        channel = pw.CharField(max_length=128, default="")
        dialect = pw.CharField(max_length=32, default="")
        prompt_tokens = pw.IntegerField(default=0)
        completion_tokens = pw.IntegerField(default=0)
        cache_read_tokens = pw.IntegerField(default=0)
        cache_write_tokens = pw.IntegerField(default=0)
        quota = pw.BigIntegerField(default=0)
        latency_ms = pw.IntegerField(default=0)
        first_byte_ms = pw.IntegerField(null=True)
        stream = pw.BooleanField(default=False)
        estimated = pw.BooleanField(default=False)
        status = pw.IntegerField(default=200)
        error = pw.CharField(max_length=255, default="")
        attempts = pw.TextField(default="")
        client_ip = pw.CharField(max_length=64, default="")
        created_at = pw.DoubleField(default=now)

        class Meta:
            indexes = ((("user_id", "created_at"), False),)

    class ChannelState(Base):
        """Runtime state of a channel declared in YAML (enabled by the operator, health)."""
        name = pw.CharField(max_length=128, primary_key=True)
        enabled = pw.BooleanField(default=True)
        reason = pw.CharField(max_length=255, default="")
        updated_at = pw.DoubleField(default=now)

    class Session(Base):
        """A login to the self-service API.  Only the SHA-256 of the session token is stored."""
        user = pw.ForeignKeyField(User, backref="sessions", on_delete="CASCADE")
        token_hash = pw.CharField(max_length=64, unique=True)
        created_at = pw.DoubleField(default=now)
        expires_at = pw.DoubleField()
        revoked_at = pw.DoubleField(null=True)
        client_ip = pw.CharField(max_length=64, default="")

    class Card(Base):
        """A redemption card.  The code itself is never stored: only its keyed hash (HMAC with
        the card key, see store/cards.py) and a short hint for people."""
        code_hash = pw.CharField(max_length=64, unique=True)
        hint = pw.CharField(max_length=48)
        amount = pw.BigIntegerField()
        status = pw.CharField(max_length=16, default="unused", index=True)  # unused, used, void
        batch = pw.CharField(max_length=32, default="", index=True)
        expires_at = pw.DoubleField(null=True)
        created_at = pw.DoubleField(default=now)
        used_by = pw.IntegerField(null=True)
        used_at = pw.DoubleField(null=True)

    class Task(Base):
        """A long-running generation task (Midjourney, Suno, video; store/tasks.py).

        ``task_id`` is relaykit's own id, the one the client sees; ``channel`` and
        ``upstream_id`` say where the work really runs.  While ``is_open`` the task's hold
        (``hold_id`` in the hold table) stays reserved, across restarts too, until the
        poller settles it (success) or releases it (failure, deadline).
        """
        task_id = pw.CharField(max_length=64, unique=True)
        platform = pw.CharField(max_length=16)           # midjourney, suno, video
        action = pw.CharField(max_length=32)             # IMAGINE, UPSCALE, MUSIC, LYRICS, GENERATE, ...
        user_id = pw.IntegerField(index=True)
        token_id = pw.IntegerField(null=True)
        token_name = pw.CharField(max_length=128, default="")
        token_limited = pw.BooleanField(default=False)
        model = pw.CharField(max_length=128)              # the priced name (mj_imagine, suno_music, kling-v1)
        upstream_model = pw.CharField(max_length=128, default="")
        channel = pw.CharField(max_length=128, default="")
        key_fp = pw.CharField(max_length=64, default="")  # fingerprint of the upstream key used; never the key
        upstream_id = pw.CharField(max_length=191, default="", index=True)
        parent_id = pw.CharField(max_length=64, null=True)
        status = pw.CharField(max_length=16)
        progress = pw.IntegerField(default=0)
        fail_reason = pw.TextField(default="")
        request = pw.TextField(default="{}")             # the client's fields the answers repeat (JSON)
        result = pw.TextField(default="{}")              # what the upstream produced (JSON)
        seconds = pw.IntegerField(default=0)              # clip length (video)
        quota = pw.BigIntegerField(default=0)             # the price, held at submit
        hold_id = pw.CharField(max_length=64, unique=True)
        is_open = pw.BooleanField(default=True)
        notify_hook = pw.TextField(default="")
        hook_status = pw.CharField(max_length=16, default="")
        client_ip = pw.CharField(max_length=64, default="")
        submit_time = pw.DoubleField(default=now)
        start_time = pw.DoubleField(null=True)
        finish_time = pw.DoubleField(null=True)
        deadline_at = pw.DoubleField()
        next_poll_at = pw.DoubleField(default=0)
        poll_failures = pw.IntegerField(default=0)
        last_error = pw.CharField(max_length=255, default="")

        class Meta:
            indexes = ((("is_open", "next_poll_at"), False), (("user_id", "id"), False))

    return Tables(db=db, Meta=MetaKV, Migration=Migration, User=User, Token=Token, Hold=Hold,
                  Ledger=Ledger, RequestLog=RequestLog, ChannelState=ChannelState, Session=Session, Card=Card,
                  Task=Task,
                  sql=HotSQL(User, Token, Hold, Ledger, RequestLog))
