"""The task repository: one hold per task, closed and settled exactly once, claims that
two pollers cannot share, and holds of open tasks surviving the start-up recovery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from relaykit.errors import InsufficientQuota
from relaykit.store import accounts, billing
from relaykit.store import tasks as repo
from relaykit.store.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/t.db")
    s.migrate()
    yield s
    s.close()


def _user(store: Store, balance: int = 1000) -> int:
    def make(t: Any) -> int:
        u = accounts.create_user(t, "ann")
        billing.topup(t, "ann", balance)
        return int(u.id)
    return store.tx(make)


def _task(store: Store, user_id: int, task_id: str = "t1", quota: int = 300, now: float = 100.0) -> repo.TaskRecord:
    return store.tx(lambda t: repo.create(t, task_id=task_id, platform="video", action="GENERATE", user_id=user_id,
                                          token_id=None, token_name="tok", token_limited=False, model="kling-v1",
                                          quota=quota, request={"prompt": "p"}, deadline_at=now + 60, now=now))


def _balance(store: Store) -> int:
    return int(store.tx(lambda t: accounts.user_row(t, "ann").balance))


def test_create_holds_and_success_charges_once(store: Store) -> None:
    uid = _user(store)
    rec = _task(store, uid)
    assert rec.status == repo.SUBMITTING and rec.is_open and _balance(store) == 700
    store.tx(lambda t: repo.accept(t, "t1", channel="kl", key_fp="fp", upstream_id="up-1", upstream_model="kling-v1",
                                   status="SUBMITTED", next_poll_at=101))
    assert store.tx(lambda t: repo.record(t, "t1", status="IN_PROGRESS", progress=40, result={"a": 1},
                                          fail_reason="", now=102, next_poll_at=103)) is None
    closed = store.tx(lambda t: repo.record(t, "t1", status="SUCCESS", progress=100, result={"url": "u"},
                                            fail_reason="", now=110, next_poll_at=111))
    assert closed is not None and closed.status == "SUCCESS" and closed.result == {"a": 1, "url": "u"}
    assert closed.start_time == 102 and closed.finish_time == 110 and not closed.is_open
    again = store.tx(lambda t: repo.finish(t, "t1", success=True, reason="", now=120))
    assert again is None and _balance(store) == 700
    ledger = store.tx(lambda t: [(r.kind, r.amount) for r in t.Ledger.select().where(t.Ledger.request_id == "task-t1")])
    assert ledger == [("charge", -300)]
    assert all(line.ok for line in store.tx(billing.audit))


def test_failure_releases_the_hold(store: Store) -> None:
    uid = _user(store)
    _task(store, uid)
    closed = store.tx(lambda t: repo.finish(t, "t1", success=False, reason="upstream said no", now=105,
                                            log_status=502))
    assert closed is not None and closed.fail_reason == "upstream said no" and _balance(store) == 1000
    log = store.tx(lambda t: t.RequestLog.get())
    assert (log.model, log.quota, log.status, log.dialect) == ("kling-v1", 0, 502, "video")


def test_no_balance_no_task(store: Store) -> None:
    uid = _user(store, balance=100)
    with pytest.raises(InsufficientQuota):
        _task(store, uid)
    assert store.tx(lambda t: t.Task.select().count()) == 0


def test_claims_are_exclusive_and_only_for_confirmed_tasks(store: Store) -> None:
    uid = _user(store, balance=10_000)
    for i in range(3):
        _task(store, uid, f"t{i}")
    for i in range(2):
        store.tx(lambda t, i=i: repo.accept(t, f"t{i}", channel="kl", key_fp="", upstream_id=f"u{i}",
                                            upstream_model="m", status="SUBMITTED", next_poll_at=100))
    first = store.tx(lambda t: repo.claim_due(t, now=100, lease=30, limit=10))
    second = store.tx(lambda t: repo.claim_due(t, now=100, lease=30, limit=10))
    assert sorted(r.task_id for r in first) == ["t0", "t1"] and second == []
    assert [r.task_id for r in store.tx(lambda t: repo.claim_due(t, now=131, lease=30, limit=10))] == ["t0", "t1"]
    assert store.tx(lambda t: repo.follow_again(t, 50)) == 2


def test_overdue_and_orphaned(store: Store) -> None:
    uid = _user(store, balance=10_000)
    _task(store, uid, "orphan", now=100)
    _task(store, uid, "late", now=100)
    store.tx(lambda t: repo.accept(t, "late", channel="kl", key_fp="", upstream_id="u", upstream_model="m",
                                   status="SUBMITTED", next_poll_at=100))
    assert store.tx(lambda t: repo.overdue(t, now=150, orphaned_before=90)) == []
    assert sorted(store.tx(lambda t: repo.overdue(t, now=170, orphaned_before=50))) == [
        ("late", "deadline"), ("orphan", "deadline")]
    assert store.tx(lambda t: repo.overdue(t, now=150, orphaned_before=101)) == [("orphan", "orphaned")]


def test_startup_recovery_leaves_holds_of_open_tasks(store: Store) -> None:
    uid = _user(store, balance=10_000)
    _task(store, uid, "open")
    _task(store, uid, "done")
    store.tx(lambda t: repo.finish(t, "done", success=True, reason="", now=101))
    store.tx(lambda t: billing.place_hold(t, request_id="chat-1", user_id=uid, token_id=None, token_limited=False,
                                          amount=50, model="gpt"))
    assert store.tx(billing.release_stale_holds) == 1  # only the chat request's
    assert store.tx(lambda t: [h.request_id for h in t.Hold.select()]) == ["task-open"]
    assert all(line.ok for line in store.tx(billing.audit))


def test_tasks_are_private_and_listed_for_operators(store: Store) -> None:
    uid = _user(store)
    _task(store, uid)
    assert store.tx(lambda t: repo.get(t, "t1", user_id=uid + 1)) is None
    assert [r.task_id for r in store.tx(lambda t: repo.many(t, ["t1", "x", "t1"], uid))] == ["t1"]
    rows = store.tx(lambda t: repo.listing(t, status="open", user="ann"))
    assert [(r["task_id"], r["user"], r["status"]) for r in rows] == [("t1", "ann", "SUBMITTING")]
    assert store.tx(lambda t: repo.listing(t, status="success")) == []
    detail = store.tx(lambda t: repo.detail(t, "t1"))
    assert detail is not None and detail["hold_open"] and detail["request"] == {"prompt": "p"}
