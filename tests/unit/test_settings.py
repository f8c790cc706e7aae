"""YAML settings: both price notations, ${VAR}, and every problem with its line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from relaykit.errors import ConfigError
from relaykit.settings import build_settings, load_settings, parse_yaml


def settings(text: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    raw, lines = parse_yaml(text)
    return build_settings(raw, lines, path="t.yaml", env=env or {})


BASE = """\
groups:
  default: {ratio: 1}
models:
  a: {input: 2.5, output: 10, cache_read: 1.25}
  b: {ratio: 1.25, completion_ratio: 4, cache_read_ratio: 0.5}
  c: {per_call: 0.04}
channels:
  - name: up
    type: openai
    base_url: https://example.invalid
    keys: ["${KEY}"]
    models: [a, b, c]
"""


def test_both_price_notations_mean_the_same() -> None:
    s = settings(BASE, {"KEY": "sk-x"})
    assert not s.problems
    assert s.prices["a"].model_ratio == s.prices["b"].model_ratio == Decimal("1.25")
    assert s.prices["a"].completion_ratio == s.prices["b"].completion_ratio == 4
    assert s.prices["a"].cache_read_ratio == s.prices["b"].cache_read_ratio == Decimal("0.5")
    assert s.prices["c"].per_call_usd == Decimal("0.04")
    assert s.channels[0].keys == ("sk-x",)


def test_settings_are_frozen() -> None:
    s = settings(BASE, {"KEY": "sk-x"})
    with pytest.raises(AttributeError):
        s.channels[0].name = "other"  # type: ignore[misc]


def test_unset_variable_is_a_warning_with_its_line_and_disables_the_channel() -> None:
    s = settings(BASE)
    assert not s.errors
    assert any(p.line == 11 and "${KEY}" in p.message for p in s.warnings)
    assert s.channels[0].enabled is False


def test_each_problem_names_its_line() -> None:
    text = BASE.replace("    models: [a, b, c]\n", "    models: [a, b, c, d]\n    colour: red\n") + \
        "  - name: up\n    type: gopher\n    models: [a]\n"
    s = settings(text, {"KEY": "k"})
    rendered = [p.render("t.yaml") for p in s.problems]
    assert "t.yaml line 13: unknown key 'colour' in channel 'up'" in rendered
    assert any(r.startswith("t.yaml line 15:") and "unknown type 'gopher'" in r for r in rendered)
    assert any("model 'd'" in w.message and "no price" in w.message for w in s.warnings)


def test_mixed_notations_and_unknown_group_are_errors() -> None:
    text = BASE.replace("c: {per_call: 0.04}", "c: {input: 1, ratio: 2}").replace(
        "    models: [a, b, c]\n", "    models: [a, b, c]\n    groups: [gold]\n")
    s = settings(text, {"KEY": "k"})
    messages = [p.message for p in s.errors]
    assert any("mixes USD prices" in m for m in messages)
    assert any("group 'gold'" in m for m in messages)


def test_broken_yaml_is_one_sentence_with_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("server:\n  port: 3000\nchannels: [\n  {name: x\n")
    with pytest.raises(ConfigError) as err:
        load_settings(p)
    assert "line" in err.value.message and "\n" not in err.value.message
    assert str(p) in err.value.message


def test_duplicate_keys_are_refused_with_their_line() -> None:
    with pytest.raises(ConfigError, match="line 3: duplicate key 'port'"):
        parse_yaml("server:\n  port: 1\n  port: 2\n")
