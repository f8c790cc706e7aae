"""``relaykit tasks list [--status] [--user] [--json]`` and ``relaykit tasks show ID``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from relaykit.cli import output
from relaykit.cli.app import main
from relaykit.store import accounts, billing
from relaykit.store import tasks as repo
from relaykit.store.store import Store


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RELAYKIT_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "relaykit.yaml"
    path.write_text(f'database: {{url: "sqlite:///{tmp_path}/r.db"}}\ngroups: {{default: {{ratio: 1}}}}\n')
    store = Store(f"sqlite:///{tmp_path}/r.db")
    store.migrate()

    def seed(t: Any) -> None:
        for name in ("ann", "bob"):
            accounts.create_user(t, name)
            billing.topup(t, name, 10_000)
        for task_id, user, ok in (("mj-1", "ann", True), ("mj-2", "ann", None), ("song-1", "bob", False)):
            uid = accounts.user_row(t, user).id
            repo.create(t, task_id=task_id, platform="suno" if "song" in task_id else "midjourney", action="IMAGINE",
                        user_id=uid, token_id=None, token_name="tok", token_limited=False, model="mj_imagine",
                        quota=500, request={"prompt": "a cat"}, deadline_at=2e9, now=1.7e9)
            repo.accept(t, task_id, channel="mj", key_fp="fp", upstream_id="up-" + task_id, upstream_model="m",
                        status="IN_PROGRESS", next_poll_at=1.7e9)
            if ok is not None:
                repo.finish(t, task_id, success=ok, reason="" if ok else "upstream failed", now=1.7e9 + 60)

    store.tx(seed)
    store.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_with_filters(cfg: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, "tasks", "list", "--json", "--config", str(cfg))
    rows = orjson.loads(out)
    assert code == 0 and [r["task_id"] for r in rows] == ["song-1", "mj-2", "mj-1"]
    assert rows[0]["user"] == "bob" and rows[0]["status"] == "FAILURE" and rows[0]["fail_reason"] == "upstream failed"
    code, out, _ = run(capsys, "tasks", "list", "--status", "open", "--json", "--config", str(cfg))
    assert [r["task_id"] for r in orjson.loads(out)] == ["mj-2"]
    code, out, _ = run(capsys, "tasks", "list", "--user", "ann", "--status", "success", "--json", "--config", str(cfg))
    assert [r["task_id"] for r in orjson.loads(out)] == ["mj-1"]
    monkeypatch.setattr(output._console(), "_width", 200)  # noqa: SLF001 - rich tables unclipped under capture
    code, out, _ = run(capsys, "tasks", "list", "--config", str(cfg))
    assert code == 0 and "mj-2" in out and "IN_PROGRESS" in out
    code, _, err = run(capsys, "tasks", "list", "--status", "weird", "--config", str(cfg))
    assert code == 1 and err.startswith("relaykit: --status must be one of")


def test_show(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "tasks", "show", "mj-1", "--json", "--config", str(cfg))
    got = orjson.loads(out)
    assert code == 0 and got["status"] == "SUCCESS" and got["user"] == "ann" and got["upstream_id"] == "up-mj-1"
    assert got["hold_open"] is False and [e["kind"] for e in got["ledger"]] == ["charge"]
    code, out, _ = run(capsys, "tasks", "show", "song-1", "--config", str(cfg))
    assert code == 0 and "upstream failed" in out and "release 0" in out
    code, _, err = run(capsys, "tasks", "show", "nope", "--config", str(cfg))
    assert code == 1 and err == "relaykit: There is no task 'nope'.\n"
