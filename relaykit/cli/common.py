"""Shared CLI plumbing: the --config option, loading settings and the store, parsing
durations and amounts."""

from __future__ import annotations

import re
import time
from decimal import Decimal, InvalidOperation
from typing import Annotated, Optional

import typer

from ..errors import CliError, ConfigError
from ..settings import Settings, load_settings, resolve_config_path
from ..store.store import Store

ConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", "-c", help="Config file (default: $RELAYKIT_CONFIG, ./relaykit.yaml, or the user config dir).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

MAX_USD = Decimal(10) ** 9  # keeps every quota amount far inside a 64-bit integer
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 86400.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def settings_for(config: str | None, *, strict: bool = False) -> Settings:
    s = load_settings(resolve_config_path(config))
    if strict and s.errors:
        first = s.errors[0].render(s.path)
        more = f" (and {len(s.errors) - 1} more; run 'relaykit config check')" if len(s.errors) > 1 else ""
        raise ConfigError(first + more)
    return s


def open_store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


def parse_duration(text: str, what: str = "duration") -> float:
    """'30d', '12h', '90m', '45s', '2w' (a bare number means days) -> seconds."""
    m = _DURATION.match(text or "")
    if not m:
        raise CliError(f"The {what} '{text}' is not understood; use a number with s, m, h, d or w, like 30d.")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_usd(text: str, what: str = "amount") -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CliError(f"The {what} '{text}' is not a number of US dollars.") from None
    if not value.is_finite() or value <= 0:
        raise CliError(f"The {what} must be a positive number of US dollars.")
    if value > MAX_USD:
        raise CliError(f"The {what} must be at most {MAX_USD:,} US dollars.")
    return value


def parse_when(text: str | None, what: str) -> float | None:
    """A date (YYYY-MM-DD), a unix time, or a duration back from now ('7d')."""
    if not text:
        return None
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return time.mktime(time.strptime(text, "%Y-%m-%d"))
        except ValueError:
            raise CliError(f"The {what} date '{text}' is not a real date.") from None
    if re.fullmatch(r"\d{9,}", text):
        return float(text)
    return time.time() - parse_duration(text, what)


def split_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def fail(message: str) -> typer.Exit:
    from .output import error
    error(message)
    return typer.Exit(1)
