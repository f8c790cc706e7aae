"""Operator input the CLI must answer with one sentence and a non-zero exit (SPEC §1:
"never a traceback").  Cases marked xfail are known bugs in relaykit/ reported by the CLI
test session; each is strict, so fixing the bug turns its xfail into a failure: then
delete the marker."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from tests.cli.cli_support import assert_one_line_error, seed_user


def _bug(reason: str, raises: type[BaseException] | tuple[type[BaseException], ...]) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason="bug: " + reason, raises=raises, strict=True)


@pytest.fixture
def alice(env) -> str:
    seed_user(env.store(), "alice")
    return "alice"


@pytest.mark.parametrize("args", [
    pytest.param(("user", "topup", "alice", "1e30"), id="topup-huge"),
    pytest.param(("token", "create", "--user", "alice", "--name", "x", "--quota", "1e30"), id="token-quota-huge"),
    pytest.param(("token", "create", "--user", "alice", "--name", "x", "--rpm", "99999999999999999999"),
                 id="token-rpm-huge"),
    pytest.param(("token", "show", "99999999999999999999"), id="token-id-huge"),
    pytest.param(("logs", "tail", "--token", "99999999999999999999"), id="tail-token-huge"),
    pytest.param(("usage", "--since", "2024-02-30"), id="usage-impossible-date"),
    pytest.param(("token", "create", "--user", "alice", "--name", "x", "--expires", "1e400d"), id="expires-1e400"),
    pytest.param(("user", "topup", "alice", "Infinity"), id="topup-infinity"),
    pytest.param(("token", "revoke", "-1"), id="revoke-negative"),
])
def test_hostile_values_are_one_sentence(cli, env, alice, args) -> None:
    r = cli(*args, "--config", env.config)
    assert r.code != 0
    assert_one_line_error(r.err)


def test_backup_into_a_missing_directory_is_one_sentence(cli, env, tmp_path) -> None:
    r = cli("db", "backup", tmp_path / "no" / "such" / "dir" / "b.db", "--config", env.config)
    assert r.code != 0
    assert_one_line_error(r.err)


@pytest.mark.parametrize("text", [
    pytest.param("server:\n  port: !!int notanint\n", id="bad-int-tag"),
    pytest.param("server:\n  host: !!python/object:os.system x\n", id="python-tag"),
    pytest.param("logs:\n  retention_days: 2024-13-45\n", id="impossible-timestamp"),
    pytest.param("- just\n- a list\n", id="top-level-list"),
])
def test_hostile_yaml_is_reported_not_raised(cli, tmp_path, text) -> None:
    cfg = tmp_path / "hostile.yaml"
    cfg.write_text(text, encoding="utf-8")
    r = cli("config", "check", "--config", cfg)
    assert r.code != 0
    assert "relaykit: " in r.err and str(cfg) in r.err and "line " in r.err


def test_config_that_is_not_utf8_is_one_sentence(cli, tmp_path) -> None:
    cfg = tmp_path / "latin.yaml"
    cfg.write_bytes(b'server:\n  host: "\xff\xfe"\n')
    r = cli("config", "check", "--config", cfg)
    assert r.code != 0
    assert_one_line_error(r.err, str(cfg))


def test_port_out_of_range_is_a_config_error(cli, tmp_path) -> None:
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text("server:\n  port: 99999\n", encoding="utf-8")
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 1
    assert any("line 2" in e and "port" in e for e in r.json["errors"])


def test_init_with_a_bad_admin_name_leaves_nothing_behind(cli, tmp_path) -> None:
    r = cli("init", "--admin", "two words")
    assert r.code == 1
    assert_one_line_error(r.err, "without spaces")
    assert not (tmp_path / "relaykit.yaml").exists()
