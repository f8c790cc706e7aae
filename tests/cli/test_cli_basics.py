"""relaykit version, prices list, db migrate|backup, and the usage-error contract."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
from tests.cli.cli_support import assert_one_line_error, run_relaykit

import relaykit


def test_version_text_and_json(cli) -> None:
    r = cli("version")
    assert r.code == 0 and r.err == ""
    assert r.out == f"relaykit {relaykit.__version__}\n"
    r = cli("version", "--json")
    assert r.code == 0
    assert r.json == {"version": relaykit.__version__}


def test_version_through_the_real_entry_point(tmp_path) -> None:
    p = run_relaykit("version", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"relaykit {relaykit.__version__}"


def test_missing_required_option_is_a_one_line_usage_error(cli, env) -> None:
    r = cli("token", "create", "--user", "alice", "--config", env.config)
    assert r.code == 2
    assert r.out == ""
    assert_one_line_error(r.err, "--name", "--help")


def test_usage_error_from_the_real_entry_point(tmp_path) -> None:
    p = run_relaykit("token", "create", "--user", "alice", cwd=tmp_path)
    assert p.returncode == 2
    assert_one_line_error(p.stderr, "Missing option '--name'")


def test_unknown_command_is_a_usage_error(cli) -> None:
    r = cli("frobnicate")
    assert r.code == 2
    assert_one_line_error(r.err, "frobnicate")


def test_no_arguments_prints_help_and_lists_every_command_group(cli) -> None:
    r = cli()
    assert r.code == 0
    for name in ("init", "serve", "config", "user", "token", "logs", "usage", "audit", "prices", "db", "version"):
        assert name in r.out


def test_missing_config_file_is_one_sentence(cli, tmp_path) -> None:
    r = cli("prices", "list", "--config", tmp_path / "nope.yaml")
    assert r.code == 1
    assert_one_line_error(r.err, "nope.yaml", "does not exist", "relaykit init")


def test_prices_list_normalises_both_notations(cli, env) -> None:
    r = cli("prices", "list", "--json", "--config", env.config)
    assert r.code == 0, r.err
    by_model = {p["model"]: p for p in r.json}
    assert set(by_model) == {"mock-gpt", "mock-mini", "mock-fixed"}
    usd = by_model["mock-gpt"]  # {input: 2.5, output: 10}
    assert usd["input_per_1m"] == 2.5
    assert usd["output_per_1m"] == 10.0
    assert usd["ratio"] == 1.25
    assert usd["completion_ratio"] == 4.0
    assert usd["per_call"] is None
    ratios = by_model["mock-mini"]  # {ratio: 0.075, completion_ratio: 4}
    assert ratios["input_per_1m"] == 0.15
    assert ratios["output_per_1m"] == pytest.approx(0.6)
    assert ratios["ratio"] == 0.075
    assert ratios["completion_ratio"] == 4.0
    fixed = by_model["mock-fixed"]  # {per_call: 0.04}
    assert fixed["per_call"] == 0.04
    assert fixed["input_per_1m"] is None and fixed["output_per_1m"] is None


def test_prices_list_table(cli, env, wide) -> None:
    r = cli("prices", "list", "--config", env.config)
    assert r.code == 0, r.err
    rows = {line.split("│")[1].strip(): line for line in r.out.splitlines() if line.startswith("│")}
    assert set(rows) == {"mock-gpt", "mock-mini", "mock-fixed"}
    cells = [c.strip() for c in rows["mock-gpt"].split("│")]
    assert cells[2:4] == ["2.5", "10"]
    assert "0.04" in rows["mock-fixed"]


def test_db_migrate_is_idempotent(cli, env) -> None:
    assert not env.db.exists()
    r = cli("db", "migrate", "--json", "--config", env.config)
    assert r.code == 0, r.err
    from relaykit.store.migrations import MIGRATIONS
    assert r.json == {"applied": [name for _, name, _ in MIGRATIONS], "pending": []}
    assert env.sql("SELECT id, name FROM schema_migrations ORDER BY id")[0] == (1, "initial schema")
    assert env.sql("SELECT id, name FROM schema_migrations ORDER BY id") == [(n, name) for n, name, _ in MIGRATIONS]
    r = cli("db", "migrate", "--json", "--config", env.config)
    assert r.code == 0
    assert r.json == {"applied": [], "pending": []}
    r = cli("db", "migrate", "--config", env.config)
    assert r.code == 0
    assert "up to date" in r.out
    assert env.sql("SELECT COUNT(*) FROM schema_migrations") == [(len(MIGRATIONS),)]


def test_db_backup_is_a_readable_copy_with_the_users(cli, env, tmp_path) -> None:
    assert cli("user", "create", "alice", "--config", env.config).code == 0
    assert cli("user", "topup", "alice", "3", "--config", env.config).code == 0
    dest = tmp_path / "backup.db"
    r = cli("db", "backup", dest, "--json", "--config", env.config)
    assert r.code == 0, r.err
    assert r.json["path"] == str(dest)
    assert r.json["bytes"] == dest.stat().st_size > 0
    with contextlib.closing(sqlite3.connect(dest)) as conn:
        assert conn.execute('SELECT name, balance FROM "user"').fetchall() == [("alice", 3_000_000)]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # a backup never overwrites an existing file
    r = cli("db", "backup", dest, "--config", env.config)
    assert r.code == 1
    assert_one_line_error(r.err, "already exists")


def test_db_backup_text(cli, env, tmp_path) -> None:
    dest = tmp_path / "b2.db"
    r = cli("db", "backup", dest, "--config", env.config)
    assert r.code == 0, r.err
    assert "Backed up" in r.out and str(dest) in r.out
    assert dest.exists()
