"""relaykit audit, prices list, config check, db migrate|backup|copy, version"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import __version__
from ..errors import CliError
from ..relay.channels import kind_for
from ..settings import Settings, load_settings, resolve_config_path
from ..store import billing
from ..store.db import sqlite_path
from ..store.migrations import pending
from ..store.pg import redact
from ..store.transfer import backup_postgres
from . import output
from .db_copy import db_copy
from .common import ConfigOpt, JsonOpt, open_store, settings_for
from .prices_import import prices_import

config_app = typer.Typer(help="Configuration file.", no_args_is_help=True)
prices_app = typer.Typer(help="Model prices.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


def audit(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Prove every balance equals its ledger minus open holds; exit 1 on any mismatch."""
    s = settings_for(config)
    store = open_store(s)
    lines = store.tx(billing.audit)
    rows = [{"user": a.user, "balance": a.balance, "ledger_sum": a.ledger_sum, "open_holds": a.open_holds,
             "ok": a.ok} for a in lines]
    bad = [r for r in rows if not r["ok"]]
    if json:
        output.json_out({"ok": not bad, "users": rows})
    else:
        output.table(rows, [("user", "User"), ("balance", "Balance"), ("ledger_sum", "Ledger sum"),
                            ("open_holds", "Open holds"), ("ok", "OK")], empty="No users to audit.")
        output.say("Audit passed: every balance equals its ledger." if not bad
                   else f"Audit FAILED for {len(bad)} user(s): {', '.join(str(r['user']) for r in bad)}.")
    if bad:
        raise typer.Exit(1)


@prices_app.command("list")
def prices_list(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Model prices in USD per 1M tokens (or per call, image, second, 1M characters) and as ratios."""
    s = settings_for(config)
    rows = []
    for p in s.prices.values():
        tokens = p.basis == "token"
        rows.append({
            "model": p.model,
            "input_per_1m": float(p.input_usd_per_m) if tokens else None,
            "output_per_1m": float(p.output_usd_per_m) if tokens else None,
            "cache_read_per_1m": float(p.input_usd_per_m * p.cache_read_ratio) if tokens else None,
            "cache_write_per_1m": float(p.input_usd_per_m * p.cache_write_ratio) if tokens else None,
            "per_call": None if p.per_call_usd is None else float(p.per_call_usd),
            "per_image": None if p.per_image_usd is None else float(p.per_image_usd),
            "per_second": None if p.per_second_usd is None else float(p.per_second_usd),
            "per_1m_chars": None if p.per_char_usd is None else float(p.per_char_usd * 1_000_000),
            "ratio": float(p.model_ratio), "completion_ratio": float(p.completion_ratio),
        })
    if json:
        output.json_out(rows)
    else:
        output.table(rows, [("model", "Model"), ("input_per_1m", "Input $/1M"), ("output_per_1m", "Output $/1M"),
                            ("cache_read_per_1m", "Cache read $/1M"), ("cache_write_per_1m", "Cache write $/1M"),
                            ("per_call", "Per call $"), ("per_image", "Per image $"), ("per_second", "Per second $"),
                            ("per_1m_chars", "Per 1M chars $"), ("ratio", "Ratio"),
                            ("completion_ratio", "Completion ratio")],
                     empty="No model has a price.")


def check_report(s: Settings) -> dict[str, Any]:
    matrix = []
    served: set[str] = set()
    for ch in s.channels:
        for m in ch.client_models():
            served.add(m)
            matrix.append({"channel": ch.name, "type": ch.type, "model": m, "upstream_model": ch.upstream_model(m),
                           "groups": list(ch.groups), "priority": ch.priority, "weight": ch.weight,
                           "enabled": ch.enabled, "supported": kind_for(ch.type) is not None})
    return {
        "ok": not s.errors,
        "errors": [p.render(s.path) for p in s.errors],
        "warnings": [p.render(s.path) for p in s.warnings],
        "matrix": matrix,
        "unpriced_models": sorted(m for m in served if m not in s.prices),
        "unserved_models": sorted(m for m in s.prices if m not in served),
        "unsupported_channels": sorted({c.name for c in s.channels if kind_for(c.type) is None}),
    }


@config_app.command("check")
def config_check(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Validate the YAML; print channels x models x groups, unpriced and unserved models."""
    s = load_settings(resolve_config_path(config))
    report = check_report(s)
    if json:
        output.json_out(report)
    else:
        output.table(report["matrix"], [("channel", "Channel"), ("type", "Type"), ("model", "Model"),
                                        ("upstream_model", "Upstream model"), ("groups", "Groups"),
                                        ("priority", "Priority"), ("weight", "Weight"), ("enabled", "Enabled")],
                     title="Channels x models x groups", empty="No channels are declared.")
        output.say("Unpriced models: " + (", ".join(report["unpriced_models"]) or "none"))
        output.say("Models no channel serves: " + (", ".join(report["unserved_models"]) or "none"))
        if report["unsupported_channels"]:
            output.say("Channel types this build cannot serve yet: " + ", ".join(report["unsupported_channels"]))
        for w in report["warnings"]:
            output.warn(w)
        for e in report["errors"]:
            output.error(e)
        output.say("Configuration is valid." if report["ok"] else f"{len(report['errors'])} error(s) found.")
    if not report["ok"]:
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Apply pending schema migrations."""
    s = settings_for(config)
    from ..store.store import Store
    store = Store(s.database_url)
    applied = store.migrate()
    if json:
        output.json_out({"applied": applied, "pending": store.tx(pending)})
    else:
        output.say("Applied: " + ", ".join(applied) if applied else "The database schema is up to date.")


@db_app.command("backup")
def db_backup(path: Annotated[Path, typer.Argument(help="Where to write the copy.")], config: ConfigOpt = None,
              json: JsonOpt = False) -> None:
    """Copy the database online (consistent while serve runs): SQLite to a SQLite file,
    PostgreSQL with pg_dump to a custom-format dump (restore with pg_restore)."""
    s = settings_for(config)
    src = sqlite_path(s.database_url)
    if path.exists():
        raise CliError(f"{path} already exists; choose a new file.")
    if not path.parent.is_dir():
        raise CliError(f"The directory {path.parent} does not exist.")
    if src is None:
        backup_postgres(s.database_url, path)
        if json:
            output.json_out({"path": str(path), "bytes": path.stat().st_size, "format": "pg_dump"})
        else:
            output.say(f"Backed up {redact(s.database_url)} to {path} (pg_dump custom format; "
                       "restore with pg_restore).")
        return
    open_store(s)
    try:
        with sqlite3.connect(str(src)) as a, sqlite3.connect(str(path)) as b:
            a.backup(b)
    except sqlite3.Error as exc:
        raise CliError(f"The backup to {path} failed: {exc}.") from None
    if json:
        output.json_out({"path": str(path), "bytes": path.stat().st_size})
    else:
        output.say(f"Backed up {src} to {path}.")


def version(json: JsonOpt = False) -> None:
    """Print relaykit's version."""
    if json:
        output.json_out({"version": __version__})
    else:
        output.line(f"relaykit {__version__}")


prices_app.command("import")(prices_import)


db_app.command("copy")(db_copy)
