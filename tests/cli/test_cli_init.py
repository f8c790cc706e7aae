"""relaykit init: a starter config, the database and the first admin, its secrets shown once."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import closing
from pathlib import Path

from tests.cli.cli_support import assert_one_line_error

from relaykit.settings import load_settings


def _db_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.iterdir() if p.name.startswith("relaykit.db"))


def test_init_writes_config_database_and_admin_shown_once(cli, tmp_path) -> None:
    r = cli("init")
    assert r.code == 0, r.err
    cfg = tmp_path / "relaykit.yaml"
    assert cfg.exists()
    example = (Path(__file__).resolve().parents[2] / "relaykit.example.yaml").read_text(encoding="utf-8")
    assert cfg.read_text(encoding="utf-8") == example
    s = load_settings(cfg)
    assert s.errors == []
    db = tmp_path / "data" / "relaykit.db"
    assert s.database_url == f"sqlite:///{db}"
    assert db.exists()

    password = re.search(r"^password: (\S+)$", r.out, re.M)
    token = re.search(r"^token:\s+(sk-\S+)$", r.out, re.M)
    assert password and token, r.out
    password_text, key = password.group(1), token.group(1)
    assert r.out.count(key) == 1 and r.out.count(password_text) == 1

    with closing(sqlite3.connect(db)) as conn:
        users = conn.execute('SELECT name, role, password_hash FROM "user"').fetchall()
        tokens = conn.execute("SELECT key_hash, key_hint FROM token").fetchall()
    assert [(u[0], u[1]) for u in users] == [("admin", "admin")]
    assert users[0][2] and users[0][2].startswith("scrypt$")
    assert tokens == [(hashlib.sha256(key.encode()).hexdigest(), f"sk-...{key[-4:]}")]

    # neither secret is anywhere in the database files (main file, WAL, shared memory)
    files = _db_files(tmp_path / "data")
    assert files
    for f in files:
        raw = f.read_bytes()
        assert key.encode() not in raw, f
        assert key[3:].encode() not in raw, f
        assert password_text.encode() not in raw, f


def test_second_init_refuses_without_force(cli, tmp_path) -> None:
    assert cli("init").code == 0
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8") + "# operator edit\n", encoding="utf-8")
    r = cli("init")
    assert r.code == 1
    assert r.out == ""
    assert_one_line_error(r.err, "relaykit.yaml", "already exists", "--force")
    assert cfg.read_text(encoding="utf-8").endswith("# operator edit\n")  # untouched


def test_init_force_rewrites_config_but_never_a_second_admin_token(cli, tmp_path) -> None:
    first = cli("init", "--json")
    assert first.code == 0, first.err
    info = first.json
    assert info["admin"] == "admin" and info["token"].startswith("sk-") and info["password"]
    assert isinstance(info["token_id"], int)
    again = cli("init", "--force", "--json")
    assert again.code == 0, again.err
    assert again.json["admin"] is None and again.json["token"] is None and again.json["password"] is None
    text = cli("init", "--force")
    assert text.code == 0
    assert "already exists" in text.out and "sk-" not in text.out
    with closing(sqlite3.connect(tmp_path / "data" / "relaykit.db")) as conn:
        assert conn.execute("SELECT COUNT(*) FROM token").fetchone() == (1,)
        assert conn.execute('SELECT COUNT(*) FROM "user"').fetchone() == (1,)


def test_init_admin_name_and_config_path(cli, tmp_path) -> None:
    target = tmp_path / "etc" / "rk.yaml"
    r = cli("init", "--admin", "root", "--config", target, "--json")
    assert r.code == 0, r.err
    assert r.json["config"] == str(target) and target.exists()
    r = cli("user", "show", "root", "--json", "--config", target)
    assert r.code == 0, r.err
    assert r.json["name"] == "root" and r.json["role"] == "admin"
    r = cli("token", "list", "--json", "--config", target)
    assert [(t["user"], t["name"]) for t in r.json] == [("root", "admin")]
