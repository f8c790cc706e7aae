"""Fixtures for the CLI tests: every test runs in its own tmp dir with its own config,
data dir and SQLite database; nothing reads the developer's real config or keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.cli.cli_support import CONFIG_TEMPLATE, QUOTA_PER_USD, Env, Result

from relaykit.cli import output
from relaykit.cli.app import main


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's own config, data dir or upstream keys."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RELAYKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RELAYKIT_CONFIG", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    db = tmp_path / "r.db"
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text(CONFIG_TEMPLATE.format(db=db, qpu=QUOTA_PER_USD), encoding="utf-8")
    return Env(tmp_path, cfg, db)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `relaykit ARGS...` in-process through the real entry point ``main(argv)``."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main([str(a) for a in args])
        got = capsys.readouterr()
        return Result(code, got.out, got.err)

    return run


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables at 200 columns so cells are not cut with '…' under capture."""
    monkeypatch.setattr(output._console(), "_width", 200)  # noqa: SLF001


