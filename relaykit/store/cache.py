"""In-memory snapshots of tokens and users for the hot path.

A background thread polls the change counter (one indexed read every ``interval``
seconds) and rebuilds the snapshot when it moved, so a token revoked or a user disabled
with the CLI is refused by a running server within about one interval.  The event loop
only reads dictionaries; the swap is a single attribute assignment.  A key the snapshot
does not know is looked up once in a worker thread (new tokens work at once) and a miss
is remembered until the next reload.  ``wake`` makes the refresher check at once: with
Redis, another instance's change arrives that way (relay/shared.py) instead of by polling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from ..domain import TokenInfo, UserInfo
from .accounts import change_counter
from .channels import disabled_sets
from .tables import Tables

log = logging.getLogger("relaykit.store.cache")
MIN_CHECK_GAP = 0.02


@dataclass(frozen=True)
class Snapshot:
    version: int = -1
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    users: dict[int, UserInfo] = field(default_factory=dict)
    channels_disabled: frozenset[str] = frozenset()
    dead_keys: dict[str, dict[str, str]] = field(default_factory=dict)  # channel -> fingerprint -> reason


def _token_info(row: object) -> TokenInfo:
    r = row  # peewee row
    return TokenInfo(
        id=r.id, user_id=r.user_id, name=r.name, status=r.status, expires_at=r.expires_at,  # type: ignore[attr-defined]
        unlimited=bool(r.unlimited), group=r.group,  # type: ignore[attr-defined]
        models=tuple(m for m in r.models.split(",") if m),  # type: ignore[attr-defined]
        ips=tuple(i for i in r.ips.split(",") if i), rpm=r.rpm, tpm=r.tpm)  # type: ignore[attr-defined]


def load_snapshot(t: Tables) -> Snapshot:
    version = change_counter(t)
    users = {u.id: UserInfo(u.id, u.name, u.group, u.status, u.role) for u in t.User.select()}
    tokens = {r.key_hash: _token_info(r) for r in t.Token.select()}
    channels_disabled, dead_keys = disabled_sets(t)
    return Snapshot(version, tokens, users, channels_disabled, dead_keys)


def lookup_token(t: Tables, key_hash: str) -> tuple[TokenInfo, UserInfo] | None:
    row = t.Token.get_or_none(t.Token.key_hash == key_hash)
    if row is None:
        return None
    u = t.User.get_by_id(row.user_id)
    return _token_info(row), UserInfo(u.id, u.name, u.group, u.status, u.role)


class AccountCache:
    def __init__(self, tables: Tables, *, interval: float = 0.5,
                 on_reload: Callable[[Snapshot], None] | None = None) -> None:
        self._t = tables
        self._interval = interval
        self._on_reload = on_reload
        self.snapshot = Snapshot()
        self._misses: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._listeners: list[Callable[[int], None]] = []
        self._thread: threading.Thread | None = None

    def load_now(self) -> None:
        with self._t.db.connection_context():
            self.snapshot = load_snapshot(self._t)
        self._misses = set()

    def start(self) -> None:
        self.load_now()
        self._thread = threading.Thread(target=self._run, name="relaykit-cache", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Check the change counter now instead of at the next poll (thread-safe).  Another
        instance said, through Redis, that it changed something; or this one just wrote."""
        self._wake.set()

    def add_listener(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(version)`` in the refresher thread after each reload."""
        self._listeners.append(fn)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        db = self._t.db
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                with db.connection_context():
                    if change_counter(self._t) != self.snapshot.version:
                        self.snapshot = load_snapshot(self._t)
                        self._misses = set()
                        if self._on_reload:
                            self._on_reload(self.snapshot)
                        for fn in self._listeners:
                            fn(self.snapshot.version)
            except Exception:  # a transient database error must not kill the refresher
                log.exception("cache reload failed")
            # wakes arriving faster than this are merged into one check (one indexed read)
            if self._stop.wait(MIN_CHECK_GAP):
                return

    def token(self, key_hash: str) -> tuple[TokenInfo, UserInfo] | None:
        """Hot-path lookup; None means 'not in the snapshot' (ask ``fetch`` in a thread)."""
        snap = self.snapshot
        info = snap.tokens.get(key_hash)
        if info is None:
            return None
        user = snap.users.get(info.user_id)
        return (info, user) if user is not None else None

    def known_missing(self, key_hash: str) -> bool:
        return key_hash in self._misses

    def fetch(self, key_hash: str) -> tuple[TokenInfo, UserInfo] | None:
        """Blocking lookup for a key the snapshot lacks; runs in a worker thread."""
        with self._t.db.connection_context():
            found = lookup_token(self._t, key_hash)
        if found is None:
            if len(self._misses) > 100_000:
                self._misses = set()
            self._misses.add(key_hash)
        return found
