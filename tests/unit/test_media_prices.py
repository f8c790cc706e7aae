"""Prices for every basis (per image with size/quality factors, per second of audio, per
1M characters, per call, audio tokens) in both YAML notations, the formulas, the
``models_file`` include and ``relaykit prices import``."""

from __future__ import annotations

import json
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from relaykit.cli.app import main
from relaykit.cli.prices_import import convert, import_prices
from relaykit.domain import Price, Usage
from relaykit.relay.pricing import Units, image_factor, token_quota, units_hold, units_quota
from relaykit.settings import build_settings, load_settings, parse_yaml

D = Decimal
QPU = 500_000


def prices(models: str) -> tuple[dict[str, Price], list[str]]:
    text = "models:\n" + textwrap.indent(textwrap.dedent(models), "  ")
    raw, lines = parse_yaml(text)
    s = build_settings(raw, lines, path="t.yaml", env={})
    return s.prices, [p.message for p in s.errors]


def test_both_notations_of_every_new_basis_mean_the_same() -> None:
    got, errors = prices("""
        img-usd: {per_image: 0.04, image_sizes: {"1024x1024": 1, "1792x1024": 2}, image_qualities: {hd: 2}}
        img-ratio: {image_ratio: 20, image_sizes: {"1024x1024": 1, "1792x1024": 2}, image_qualities: {hd: 2}}
        sec-usd: {per_second: 0.0001}
        sec-ratio: {second_ratio: 0.05}
        chr-usd: {per_1m_chars: 15}
        chr-ratio: {char_ratio: 7.5}
        rt-usd: {input: 4, output: 16, audio_input: 32, audio_output: 64}
        rt-ratio: {ratio: 2, completion_ratio: 4, audio_input_ratio: 8, audio_output_ratio: 16}
    """)
    assert errors == []
    for a, b in (("img-usd", "img-ratio"), ("sec-usd", "sec-ratio"), ("chr-usd", "chr-ratio"), ("rt-usd", "rt-ratio")):
        pa, pb = got[a], got[b]
        assert (pa.basis, pa.per_image_usd, pa.per_second_usd, pa.per_char_usd, pa.model_ratio,
                pa.audio_input_ratio, pa.audio_output_ratio, pa.image_size_factors) == (
            pb.basis, pb.per_image_usd, pb.per_second_usd, pb.per_char_usd, pb.model_ratio,
            pb.audio_input_ratio, pb.audio_output_ratio, pb.image_size_factors), a
    assert got["img-usd"].per_image_usd == D("0.04") and got["sec-usd"].per_second_usd == D("0.0001")
    assert got["chr-usd"].per_char_usd == D("0.000015") and got["rt-usd"].audio_output_ratio == 16


@pytest.mark.parametrize("spec, needle", [
    ("{per_image: 0.04, input: 1}", "use one basis"),
    ("{per_call: 0.1, per_second: 1}", "use one basis"),
    ("{per_call: 0.1, input: 1}", "per_call and token prices"),
    ("{per_image: 0.04, char_ratio: 1}", "mixes USD prices"),
    ("{input: 1, image_sizes: {a: 1}}", "no per-image price"),
    ("{per_image: 0.04, image_sizes: [1, 2]}", "must map each value"),
    ("{per_image: 0.04, image_qualities: {hd: -1}}", "non-negative"),
    ("{input: 0, audio_output: 5}", "input price of 0"),
])
def test_price_mistakes_are_reported(spec: str, needle: str) -> None:
    _, errors = prices(f"m: {spec}")
    assert any(needle in e for e in errors), errors


def test_image_factors_default_listed_and_unlisted() -> None:
    table = ((("1024x1024"), D(1)), ("1792x1024", D(2)))
    assert image_factor(table, "1792x1024") == 2
    assert image_factor(table, "") == 1          # the model's default size: the base price
    assert image_factor(table, "auto") == 2      # not listed: the dearest, never less
    assert image_factor((), "anything") == 1


def test_quota_of_each_basis() -> None:
    img = Price("i", per_image_usd=D("0.04"), image_size_factors=(("1024x1024", D(1)), ("1792x1024", D(2))),
                image_quality_factors=(("standard", D(1)), ("hd", D(2))))
    units = Units(images=(("1792x1024", "hd"), ("1024x1024", "standard")))
    assert units_quota(img, units, D(1), QPU) == 100_000  # (0.16 + 0.04) × 500 000
    assert units_quota(img, units, D("0.5"), QPU) == 50_000
    sec = Price("s", per_second_usd=D("0.0001"))
    assert units_quota(sec, Units(seconds=D("2.5")), D(1), QPU) == 125
    assert units_quota(sec, Units(seconds=D("0.001")), D(1), QPU) == 1  # rounded up, never free
    char = Price("c", per_char_usd=D("0.000015"))
    assert units_quota(char, Units(chars=1000), D(1), QPU) == 7_500
    call = Price("k", per_call_usd=D("0.002"))
    assert units_quota(call, Units(), D(1), QPU) == 1_000
    tok = Price("t", model_ratio=D("0.01"))
    assert units_quota(tok, Units(usage=Usage(prompt_tokens=1000)), D(1), QPU) == 10


def test_audio_tokens_take_their_own_ratios() -> None:
    rt = Price("rt", model_ratio=D(2), completion_ratio=D(4), cache_read_ratio=D("0.1"),
               audio_input_ratio=D(8), audio_output_ratio=D(16))
    usage = Usage(prompt_tokens=200, completion_tokens=100, cache_read_tokens=10, audio_prompt_tokens=150,
                  audio_completion_tokens=80)
    # text in 40 + audio in 150 × 8 + cached 10 × 0.1 + text out 20 × 4 + audio out 80 × 16 = 2601 units at ratio 2
    assert token_quota(usage, rt, D(1), QPU) == 2 * 2601
    plain = Usage(prompt_tokens=200, completion_tokens=100)
    assert token_quota(plain, rt, D(1), QPU) == 2 * (200 + 400)
    # without audio ratios audio tokens cost what text does
    text_only = Price("t", model_ratio=D(2), completion_ratio=D(4))
    assert token_quota(usage, text_only, D(1), QPU) == 2 * (190 + 10 + 400)


def test_holds_cover_the_largest_cost() -> None:
    tok = Price("t", model_ratio=D(1), completion_ratio=D(2), cache_write_ratio=D("1.25"))
    hold = units_hold(tok, Units(usage=Usage(prompt_tokens=100, completion_tokens=50)), D(1), QPU)
    assert hold == 125 + 100  # prompt at the dearest input rate + the output budget
    img = Price("i", per_image_usd=D("0.04"))
    assert units_hold(img, Units(images=(("", ""),) * 3), D(1), QPU) == 60_000


# --------------------------------------------------------------------------- models_file and import

LITELLM = {
    "sample_spec": {"input_cost_per_token": "0.0", "mode": "one of: chat, embedding, ..."},
    "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-06,
               "litellm_provider": "openai", "mode": "chat"},
    "whisper-1": {"input_cost_per_second": 0.0001, "output_cost_per_second": 0.0001, "litellm_provider": "openai",
                  "mode": "audio_transcription"},
    "tts-1": {"input_cost_per_character": 1.5e-05, "litellm_provider": "openai", "mode": "audio_speech"},
    "standard/1024-x-1024/dall-e-3": {"input_cost_per_pixel": 3.81469726e-08, "litellm_provider": "openai",
                                      "mode": "image_generation"},
    "standard/1024-x-1792/dall-e-3": {"input_cost_per_pixel": 4.359627e-08, "litellm_provider": "openai",
                                      "mode": "image_generation"},
    "hd/1024-x-1024/dall-e-3": {"input_cost_per_pixel": 7.629397e-08, "litellm_provider": "openai",
                                "mode": "image_generation"},
    "imagen-3": {"output_cost_per_image": 0.04, "litellm_provider": "vertex", "mode": "image_generation"},
    "rerank-english-v3.0": {"input_cost_per_query": 0.002, "input_cost_per_token": 0.0, "litellm_provider": "cohere",
                            "mode": "rerank"},
    "gpt-realtime": {"input_cost_per_token": 4e-06, "output_cost_per_token": 1.6e-05,
                     "input_cost_per_audio_token": 3.2e-05, "output_cost_per_audio_token": 6.4e-05,
                     "litellm_provider": "openai", "mode": "chat"},
    "local/free": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "litellm_provider": "ollama"},
}


def test_litellm_entries_convert_to_every_basis() -> None:
    models, skipped = import_prices(LITELLM, match=[], providers=[])
    assert models["gpt-4o"] == {"input": 2.5, "output": 10, "cache_read": 1.25}
    assert models["whisper-1"] == {"per_second": 0.0001}
    assert models["tts-1"] == {"per_1m_chars": 15}
    assert models["imagen-3"] == {"per_image": 0.04}
    assert models["rerank-english-v3.0"] == {"per_call": 0.002}
    assert models["gpt-realtime"] == {"input": 4, "output": 16, "audio_input": 32, "audio_output": 64}
    assert models["dall-e-3"] == {"per_image": 0.04, "image_sizes": {"1024x1024": 1, "1024x1792": 2},
                                  "image_qualities": {"hd": 2, "standard": 1}}
    assert skipped == [{"model": "local/free", "reason": "no non-zero price for mode 'chat'"}]
    assert convert({"mode": "embedding", "input_cost_per_token": 0}) == (None, "no non-zero price for mode 'embedding'")
    only, _ = import_prices(LITELLM, match=["gpt-*"], providers=["openai"])
    assert sorted(only) == ["gpt-4o", "gpt-realtime"]


def test_import_writes_a_prices_file_the_config_includes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "litellm.json"
    src.write_text(json.dumps(LITELLM))
    assert main(["prices", "import", str(src)]) == 0
    printed = capsys.readouterr()
    assert yaml.safe_load(printed.out)["models"]["whisper-1"] == {"per_second": 0.0001}
    assert "skipped" in printed.err

    out = tmp_path / "prices.yaml"
    assert main(["prices", "import", str(src), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == 7 and report["out"] == str(out)
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text('models_file: prices.yaml\nmodels:\n  gpt-4o: {input: 3, output: 12}\n'
                   'channels:\n  - {name: m, type: mock, models: [gpt-4o, tts-1]}\n')
    s = load_settings(cfg, env={})
    assert s.errors == []
    assert s.prices["tts-1"].per_char_usd == D("0.000015")
    assert s.prices["gpt-4o"].model_ratio == D("1.5")  # the config's own entry wins
    assert s.prices["dall-e-3"].image_quality_factors == (("hd", D(2)), ("standard", D(1)))

    # re-running overwrites the file it wrote; a file it did not write needs --force
    assert main(["prices", "import", str(src), "--out", str(out)]) == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text("models: {}\n")
    capsys.readouterr()
    assert main(["prices", "import", str(src), "--out", str(mine)]) == 1
    assert "--force" in capsys.readouterr().err
    assert main(["prices", "import", str(tmp_path / "nope.json")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_broken_prices_file_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text("models:\n  ok: {input: 1}\n  bad: {per_image: 0.1, input: 2}\n")
    cfg = tmp_path / "relaykit.yaml"
    cfg.write_text("models_file: prices.yaml\n")
    s = load_settings(cfg, env={})
    assert "ok" in s.prices and "bad" not in s.prices
    assert any(p.message.startswith("prices.yaml line 3:") for p in s.errors), s.errors
    cfg.write_text("models_file: missing.yaml\n")
    assert any("cannot be read" in p.message for p in load_settings(cfg, env={}).errors)
