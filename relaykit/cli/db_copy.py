"""relaykit db copy --from URL --to URL: move a whole install (users, tokens, holds, the
ledger, logs, cards) to another database, typically SQLite -> PostgreSQL when one machine is
not enough, and prove it with an audit on both sides (store/transfer.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..errors import CliError
from ..settings import default_data_dir
from ..store.transfer import copy_database
from . import output
from .common import ConfigOpt, JsonOpt, settings_for

FromOpt = Annotated[Optional[str], typer.Option(
    "--from", help="Source database URL (default: database.url of the config).")]
ToOpt = Annotated[str, typer.Option("--to", help="Target database URL; it must be empty.")]


def _expand(url: str) -> str:
    return url.replace("{data_dir}", str(default_data_dir()))


def db_copy(to: ToOpt, source: FromOpt = None, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Copy everything to an empty database, then audit both sides (exit 1 if they differ)."""
    if source is None:
        source = settings_for(config).database_url
    source, to = _expand(source), _expand(to)
    for url in (source, to):
        if not url.startswith(("sqlite:///", "postgres://", "postgresql://")):
            raise CliError(f"'{url.split('://')[0]}' is not a database URL relaykit knows; use sqlite:///PATH "
                           "or postgresql://user:pass@host/db.")
    seen: dict[str, int] = {}
    with output.progress("Copying rows", None) as advance:
        def step(table: str, done: int) -> None:
            advance(done - seen.get(table, 0))
            seen[table] = done

        report = copy_database(source, to, progress=step)
    if json:
        output.json_out(report.as_dict())
    else:
        output.table([{"table": name, "rows": rows} for name, rows in report.tables.items()],
                     [("table", "Table"), ("rows", "Rows")], title=f"{report.source} -> {report.target}")
        output.say(f"Audit on the source: {'passed' if report.source_audit_ok else 'FAILED'}; "
                   f"on the target: {'passed' if report.target_audit_ok else 'FAILED'}.")
        output.say(f"Balances of {report.users} users match one for one." if report.balances_match
                   else "Balances differ for: " + ", ".join(report.mismatches) + ".")
        if not report.counts_match:
            output.say("Row counts differ between source and target.")
        output.say(f"Copied in {report.seconds:.1f} s." if report.ok else "The copy is NOT verified.")
    if not report.ok:
        raise typer.Exit(1)
