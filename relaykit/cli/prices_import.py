"""relaykit prices import FILE: model prices from a LiteLLM-schema price JSON
(``model_prices_and_context_window.json`` and files in its shape).

Two ways to use the result (README "Prices"):

* without ``--out`` the ``models:`` section is printed as YAML, to paste into the config;
* with ``--out prices.yaml`` a prices file is written that the config includes with
  ``models_file: prices.yaml``; re-running the import overwrites it (only a file this
  command wrote, unless ``--force``), so prices stay current without touching the config.
  Entries under the config's own ``models:`` win over the file's.

Field mapping (USD notation of SPEC §2): ``input_cost_per_token`` / ``output_cost_per_token``
/ ``cache_read_input_token_cost`` / ``cache_creation_input_token_cost`` /
``input_cost_per_audio_token`` / ``output_cost_per_audio_token`` -> input / output /
cache_read / cache_write / audio_input / audio_output per 1M tokens;
``output_cost_per_image`` (or ``input_cost_per_image``) -> per_image; ``input_cost_per_pixel``
entries named ``[quality/]W-x-H/model`` -> one per_image price with size and quality
factors; ``input_cost_per_second`` (or ``output_cost_per_second``) -> per_second;
``input_cost_per_character`` -> per_1m_chars; ``input_cost_per_query`` /
``input_cost_per_request`` -> per_call.  The entry's ``mode`` decides between bases; an
entry with no non-zero price is skipped (relaykit never serves a model free by accident).
"""

from __future__ import annotations

import fnmatch
import re
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Optional

import orjson
import typer
import yaml

from ..errors import CliError
from . import output
from .common import JsonOpt

HEADER = "# Prices imported by `relaykit prices import`"
MILLION = Decimal(1_000_000)
_PIXEL_NAME = re.compile(r"^(?:([A-Za-z]+)/)?(\d+)-x-(\d+)/(.+)$")
Spec = dict[str, Any]


def _usd(entry: dict[str, Any], key: str) -> Decimal | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        got = Decimal(str(value))
    except InvalidOperation:
        return None
    return got if got.is_finite() and got >= 0 else None


def _num(d: Decimal, places: int = 10) -> int | float:
    """A YAML-friendly number: no float noise from the per-token to per-1M scaling."""
    q = d.quantize(Decimal(1).scaleb(-places)).normalize()
    return int(q) if q == q.to_integral_value() else float(q)


def _first(entry: dict[str, Any], *keys: str) -> Decimal | None:
    for k in keys:
        got = _usd(entry, k)
        if got:
            return got
    return None


def token_spec(entry: dict[str, Any]) -> Spec | None:
    inp = _usd(entry, "input_cost_per_token")
    if inp is None or inp == 0:
        return None
    spec: Spec = {"input": _num(inp * MILLION)}
    for key, name in (("output_cost_per_token", "output"), ("cache_read_input_token_cost", "cache_read"),
                      ("cache_creation_input_token_cost", "cache_write"), ("input_cost_per_audio_token", "audio_input"),
                      ("output_cost_per_audio_token", "audio_output")):
        got = _usd(entry, key)
        if got is not None:
            spec[name] = _num(got * MILLION)
    return spec


def convert(entry: dict[str, Any]) -> tuple[Spec | None, str]:
    """One LiteLLM entry as a relaykit price (USD notation), or None and why not."""
    mode = entry.get("mode") or "chat"
    per_call = _first(entry, "input_cost_per_query", "input_cost_per_request")
    per_image = _first(entry, "output_cost_per_image", "input_cost_per_image")
    per_second = _first(entry, "input_cost_per_second", "output_cost_per_second")
    per_char = _first(entry, "input_cost_per_character")
    tokens = token_spec(entry)
    by_mode: dict[str, list[Spec | None]] = {
        "image_generation": [{"per_image": _num(per_image)} if per_image else None, tokens],
        "audio_transcription": [{"per_second": _num(per_second)} if per_second else None, tokens],
        "audio_speech": [{"per_1m_chars": _num(per_char * MILLION)} if per_char else None,
                         {"per_second": _num(per_second)} if per_second else None, tokens],
        "rerank": [{"per_call": _num(per_call)} if per_call else None, tokens],
    }
    choices = by_mode.get(mode, [tokens, {"per_call": _num(per_call)} if per_call else None])
    spec = next((c for c in choices if c), None)
    return (spec, "") if spec else (None, f"no non-zero price for mode '{mode}'")


def pixel_groups(entries: dict[str, dict[str, Any]]) -> dict[str, Spec]:
    """``[quality/]W-x-H/model`` entries priced per pixel, folded into one per-image price
    per model: the cheapest size at its cheapest quality is the base price, the other
    sizes and qualities are factors of it."""
    groups: dict[str, dict[tuple[str, str], Decimal]] = {}
    for name, entry in entries.items():
        m = _PIXEL_NAME.match(name)
        pixel = _usd(entry, "input_cost_per_pixel") if m else None
        if m is None or not pixel:
            continue
        quality, w, h, model = m.group(1) or "", int(m.group(2)), int(m.group(3)), m.group(4)
        groups.setdefault(model, {})[(quality, f"{w}x{h}")] = pixel * w * h
    out: dict[str, Spec] = {}
    for model, prices in groups.items():
        base_q, base_s = min(prices, key=lambda k: (prices[k], k))
        base = prices[(base_q, base_s)]
        sizes = {s: _num(p / base, 4) for (q, s), p in sorted(prices.items()) if q == base_q}
        qualities = {q: _num(p / base, 4) for (q, s), p in sorted(prices.items()) if s == base_s and q}
        spec: Spec = {"per_image": _num(base, 8)}
        if len(sizes) > 1:
            spec["image_sizes"] = sizes
        if len(qualities) > 1:
            spec["image_qualities"] = qualities
        out[model] = spec
    return out


def import_prices(data: Any, *, match: list[str], providers: list[str],
                  tick: Any = None) -> tuple[dict[str, Spec], list[dict[str, str]]]:
    if not isinstance(data, dict):
        raise CliError("The price file must be a JSON object mapping model names to prices (LiteLLM's schema).")
    entries = {k: v for k, v in data.items() if isinstance(v, dict) and k != "sample_spec"}

    def wanted(name: str, entry: dict[str, Any]) -> bool:
        if match and not any(fnmatch.fnmatchcase(name, pat) for pat in match):
            return False
        return not providers or entry.get("litellm_provider") in providers

    models: dict[str, Spec] = {}
    skipped: list[dict[str, str]] = []
    for name, entry in entries.items():
        if tick is not None:
            tick()
        if _PIXEL_NAME.match(name) or not wanted(name, entry):
            continue
        spec, why = convert(entry)
        if spec is None:
            skipped.append({"model": name, "reason": why})
        else:
            models[name] = spec
    for model, spec in pixel_groups({k: v for k, v in entries.items() if wanted(k.rsplit("/", 1)[-1], v)}).items():
        if model in models:
            skipped.append({"model": model, "reason": "per-pixel entries ignored: the model has its own price"})
        elif not match or any(fnmatch.fnmatchcase(model, pat) for pat in match):
            models[model] = spec
    return dict(sorted(models.items())), skipped


def render_yaml(models: dict[str, Spec], source: str) -> str:
    body = yaml.safe_dump({"models": models}, default_flow_style=None, sort_keys=False, width=4096,
                          allow_unicode=True)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (f"{HEADER} from {source} on {stamp}.\n"
            "# USD per 1M tokens (input, output, cache_*, audio_*), per image, per second, per 1M characters,\n"
            "# per call (SPEC §2).  Regenerate instead of editing; override a model under models: in the config.\n"
            + body)


def prices_import(
    file: Annotated[Path, typer.Argument(help="A LiteLLM-schema price JSON (model_prices_and_context_window.json).")],
    out: Annotated[Optional[Path], typer.Option("--out", help="Write a prices file (include it with "
                                                                "'models_file:') instead of printing YAML.")] = None,
    match: Annotated[Optional[list[str]], typer.Option("--match", help="Only models whose name matches this "
                                                                         "glob (repeatable).")] = None,
    provider: Annotated[Optional[list[str]], typer.Option("--provider", help="Only this litellm_provider "
                                                                               "(repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an --out file this command did not write.")] = False,
    json: JsonOpt = False,
) -> None:
    """Import model prices from a LiteLLM-schema JSON: print the models: YAML, or write a prices file."""
    try:
        data = orjson.loads(file.read_bytes())
    except FileNotFoundError:
        raise CliError(f"The price file {file} does not exist.") from None
    except OSError as exc:
        raise CliError(f"The price file {file} cannot be read: {exc.strerror}.") from None
    except orjson.JSONDecodeError:
        raise CliError(f"The price file {file} is not valid JSON.") from None
    total = len(data) if isinstance(data, dict) else 0
    with output.progress("Importing prices", total) as tick:
        models, skipped = import_prices(data, match=match or [], providers=provider or [], tick=tick)
    if not models:
        raise CliError(f"No priced model was found in {file}" + (" with those filters." if match or provider else "."))
    text = render_yaml(models, file.name)
    if out is not None:
        if out.exists() and not force and not out.read_text(encoding="utf-8", errors="replace").startswith(HEADER):
            raise CliError(f"{out} exists and was not written by 'relaykit prices import'; use --force to replace it.")
        if not out.parent.is_dir():
            raise CliError(f"The directory {out.parent} does not exist.")
        out.write_text(text, encoding="utf-8")
    if json:
        output.json_out({"imported": len(models), "skipped": skipped, "out": str(out) if out else None,
                         "models": models})
    elif out is not None:
        output.say(f"Wrote {len(models)} model prices to {out} ({len(skipped)} entries skipped). "
                   f"Include it in the config with: models_file: {out.name}")
    else:
        output.line(text.rstrip("\n"))
        typer.echo(f"{len(models)} model prices, {len(skipped)} entries skipped.", err=True)
