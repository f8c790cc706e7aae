"""relaykit config check (and serve refusing a config with errors)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.cli_support import CONFIG_TEMPLATE, QUOTA_PER_USD, assert_one_line_error, run_relaykit


def _write(tmp_path: Path, text: str, name: str = "relaykit.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _line_of(text: str, fragment: str) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def _base(tmp_path: Path) -> str:
    return CONFIG_TEMPLATE.format(db=tmp_path / "r.db", qpu=QUOTA_PER_USD)


def test_valid_config_exits_0_with_the_matrix(cli, env) -> None:
    r = cli("config", "check", "--json", "--config", env.config)
    assert r.code == 0, r.err
    report = r.json
    assert {"ok", "errors", "warnings", "matrix", "unpriced_models", "unserved_models"} <= set(report)
    assert report["ok"] is True
    assert report["errors"] == [] and report["warnings"] == []
    assert report["unpriced_models"] == [] and report["unserved_models"] == []
    assert [(m["channel"], m["type"], m["model"], m["groups"]) for m in report["matrix"]] == [
        ("local-mock", "mock", "mock-gpt", ["default", "vip"]),
        ("local-mock", "mock", "mock-mini", ["default", "vip"]),
        ("local-mock", "mock", "mock-fixed", ["default", "vip"]),
    ]


def test_valid_config_text(cli, env, wide) -> None:
    r = cli("config", "check", "--config", env.config)
    assert r.code == 0, r.err
    assert "local-mock" in r.out and "mock-fixed" in r.out
    assert "Unpriced models: none" in r.out
    assert "Models no channel serves: none" in r.out
    assert "Configuration is valid." in r.out
    assert r.err == ""


def test_unknown_key_is_an_error_with_its_line(cli, tmp_path) -> None:
    text = _base(tmp_path).replace("  port: 0\n", "  port: 0\n  prot: 3000\n")
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 1
    report = r.json
    assert report["ok"] is False
    assert report["errors"] == [f"{cfg} line {_line_of(text, 'prot:')}: unknown key 'prot' in server"]
    # text mode: the error is printed as one line on stderr, and the command fails
    r = cli("config", "check", "--config", cfg)
    assert r.code == 1
    assert f"relaykit: {cfg} line {_line_of(text, 'prot:')}: unknown key 'prot' in server" in r.err_lines
    assert "1 error(s) found." in r.out


def test_unknown_channel_type_is_an_error(cli, tmp_path) -> None:
    text = _base(tmp_path).replace("    type: mock\n", "    type: mockery\n")
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 1
    [err] = r.json["errors"]
    assert err.startswith(f"{cfg} line {_line_of(text, 'type: mockery')}: ")
    assert "unknown type 'mockery'" in err and "local-mock" in err


def test_unknown_group_is_an_error(cli, tmp_path) -> None:
    text = _base(tmp_path).replace("groups: [default, vip]", "groups: [default, gold]")
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 1
    [err] = r.json["errors"]
    assert err.startswith(f"{cfg} line {_line_of(text, 'groups: [default, gold]')}: ")
    assert "'gold'" in err and "not declared" in err


def test_model_without_price_is_only_a_warning(cli, tmp_path) -> None:
    text = _base(tmp_path).replace("models: [mock-gpt, mock-mini, mock-fixed]",
                                   "models: [mock-gpt, mock-mini, mock-fixed, mock-free]")
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 0
    report = r.json
    assert report["ok"] is True and report["errors"] == []
    assert report["unpriced_models"] == ["mock-free"]
    [warning] = report["warnings"]
    assert warning.startswith(f"{cfg} line {_line_of(text, 'mock-free]')}: ")
    assert "'mock-free'" in warning and "no price" in warning
    r = cli("config", "check", "--config", cfg)
    assert r.code == 0
    assert "Unpriced models: mock-free" in r.out
    assert any(line.startswith("warning: ") and "mock-free" in line for line in r.err_lines)


def test_priced_model_no_channel_serves_is_reported(cli, tmp_path) -> None:
    text = _base(tmp_path).replace("  mock-fixed: {per_call: 0.04}\n",
                                   "  mock-fixed: {per_call: 0.04}\n  orphan: {per_call: 1}\n")
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 0
    assert r.json["unserved_models"] == ["orphan"]
    assert any(f"line {_line_of(text, 'orphan:')}:" in w and "orphan" in w for w in r.json["warnings"])


def test_unset_environment_variable_is_a_warning(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RK_TEST_UNSET_KEY", raising=False)
    text = _base(tmp_path) + (
        "  - name: upstream\n"
        "    type: openai\n"
        "    base_url: https://api.example.com\n"
        '    keys: ["${RK_TEST_UNSET_KEY}"]\n'
        "    models: [mock-gpt]\n"
    )
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 0
    report = r.json
    assert report["ok"] is True
    line = _line_of(text, "RK_TEST_UNSET_KEY")
    assert any(w.startswith(f"{cfg} line {line}: ") and "${RK_TEST_UNSET_KEY}" in w and "not set" in w
               for w in report["warnings"]), report["warnings"]
    upstream = [m for m in report["matrix"] if m["channel"] == "upstream"]
    assert upstream and all(m["enabled"] is False for m in upstream)
    # once the variable is set the warning is gone and the channel is usable
    monkeypatch.setenv("RK_TEST_UNSET_KEY", "sk-upstream-secret-value")
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code == 0
    assert r.json["warnings"] == []
    assert "sk-upstream-secret-value" not in r.out


BROKEN = """\
server:
  host: 127.0.0.1
  port: 3000: 4000
database:
  url: "sqlite:///x.db"
"""


def test_broken_yaml_is_one_sentence_with_file_and_line(cli, tmp_path) -> None:
    cfg = _write(tmp_path, BROKEN, "broken.yaml")
    r = cli("config", "check", "--config", cfg)
    assert r.code != 0
    assert r.out == ""
    assert_one_line_error(r.err, f"{cfg} line 3", "YAML syntax error")
    r = cli("config", "check", "--json", "--config", cfg)
    assert r.code != 0
    assert_one_line_error(r.err, f"{cfg} line 3")


def test_broken_yaml_through_the_real_entry_point(tmp_path) -> None:
    _write(tmp_path, BROKEN, "broken.yaml")
    p = run_relaykit("config", "check", "--config", "broken.yaml", cwd=tmp_path)
    assert p.returncode != 0
    assert p.stdout == ""
    assert_one_line_error(p.stderr, "broken.yaml line 3", "YAML syntax error")


def test_duplicate_key_names_its_line(cli, tmp_path) -> None:
    text = _base(tmp_path).replace("  vip: {ratio: 0.5", "  default: {ratio: 0.5")
    cfg = _write(tmp_path, text)
    r = cli("config", "check", "--config", cfg)
    assert r.code == 1
    assert_one_line_error(r.err, f"line {_line_of(text, 'default: {ratio: 0.5')}", "duplicate key 'default'")


def test_serve_refuses_a_config_with_errors(tmp_path) -> None:
    text = (_base(tmp_path).replace("  port: 0\n", "  port: 0\n  prot: 3000\n")
            .replace("groups: [default, vip]", "groups: [default, gold]"))
    _write(tmp_path, text)
    p = run_relaykit("serve", "--port", "0", "--config", "relaykit.yaml", cwd=tmp_path)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert "listening" not in p.stdout
    lines = p.stderr.splitlines()
    assert lines and all(line.startswith("relaykit: ") for line in lines), lines
    assert any(f"line {_line_of(text, 'prot:')}: unknown key 'prot'" in line for line in lines)
    assert any(f"line {_line_of(text, 'gold]')}:" in line and "'gold'" in line for line in lines)
    assert "serve refuses to start" in lines[-1]


def test_serve_refuses_a_broken_yaml_in_one_line(tmp_path) -> None:
    _write(tmp_path, BROKEN)
    p = run_relaykit("serve", "--config", "relaykit.yaml", cwd=tmp_path)
    assert p.returncode != 0
    assert_one_line_error(p.stderr, "relaykit.yaml line 3")
