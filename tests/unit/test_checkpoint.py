"""WAL checkpoints run beside the writer (store/checkpoint.py), and the WAL stays bounded."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from relaykit.store import accounts, billing, checkpoint
from relaykit.store.store import Store


def wal_frames(store: Store) -> tuple[int, int]:
    """(frames in the WAL, frames already copied into the database file): a NOOP
    checkpoint only reads these counters."""
    with sqlite3.connect(store.url[len("sqlite:///"):]) as conn:
        row = conn.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()
    return int(row[1]), int(row[2])


def wait_for(cond, seconds: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(checkpoint, "REWIND_FRAMES", 40)
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.02)  # a fast tick keeps the test short
    s = Store(f"sqlite:///{tmp_path}/t.db", cache_interval=0.05)
    s.migrate()
    s.tx(lambda t: accounts.create_user(t, "u"))
    s.start()
    assert s.checkpointer is not None
    yield s
    s.stop()


def test_the_writer_connection_leaves_checkpoints_to_the_checkpointer(store: Store) -> None:
    auto = store.writer.call(lambda t: t.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert auto == 0
    # other connections (CLI, readers) keep SQLite's default
    assert store.tx(lambda t: t.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()[0]) == 1000


def test_committed_writes_reach_the_database_file_without_the_writer_checkpointing(store: Store) -> None:
    assert store.checkpointer is not None
    before = store.checkpointer.checkpoints
    for _ in range(30):
        store.writer.call(lambda t: billing.topup(t, "u", 1))
    assert wait_for(lambda: store.checkpointer.checkpoints > before)  # type: ignore[union-attr]
    assert wait_for(lambda: (lambda f: f[0] == f[1])(wal_frames(store)))  # every frame copied


def test_the_wal_is_rewound_under_steady_writes(store: Store) -> None:
    # Steady load: one commit after another, each op holding the writer a moment, so the
    # checkpointer never finds the writer idle.  Alone it never rewinds such a WAL; the
    # writer's own small checkpoint between batches does.
    store.writer._max_batch = 1  # noqa: SLF001 - one commit per operation, back to back

    def topup_and_linger(t):  # type: ignore[no-untyped-def]
        billing.topup(t, "u", 1)
        time.sleep(0.0005)

    futures = [store.writer.submit(topup_and_linger) for _ in range(600)]
    most = 0
    while not all(f.done() for f in futures):
        most = max(most, wal_frames(store)[0])
        time.sleep(0.01)
    assert all(f.exception() is None for f in futures)
    assert store.checkpointer is not None and store.checkpointer.checkpoints > 0
    # ~5 frames per top-up: without rewinds the WAL holds ~3 000 frames by the end (measured);
    # with them it stays within a few checkpointer ticks' worth (~800)
    assert most < 1500, most
    assert store.tx(lambda t: t.User.get(t.User.name == "u").balance) == 600
    assert store.tx(lambda t: t.db.execute_sql("PRAGMA integrity_check").fetchone()[0]) == "ok"
