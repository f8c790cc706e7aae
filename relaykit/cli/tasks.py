"""relaykit tasks list|show: long-running generation tasks (Midjourney, Suno, video)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import orjson
import typer

from ..errors import CliError
from ..store import tasks as repo
from . import output
from .common import ConfigOpt, JsonOpt, open_store, settings_for

app = typer.Typer(help="Long-running tasks: Midjourney, Suno, video.", no_args_is_help=True)

COLUMNS = [("task_id", "Task"), ("platform", "API"), ("action", "Action"), ("model", "Model"), ("user", "User"),
           ("channel", "Channel"), ("status", "Status"), ("progress", "%"), ("quota", "Quota"),
           ("submitted", "Submitted"), ("fail_reason", "Why it failed")]
STATUS_CHOICES = ("open", *[s.lower() for s in repo.STATUSES])


def _stamp(row: dict[str, Any]) -> dict[str, Any]:
    row["submitted"] = output.when(row.get("submit_time"))
    row["finished"] = output.when(row.get("finish_time"))
    return row


@app.command("list")
def list_tasks(status: Annotated[Optional[str], typer.Option(
                   "--status", help="open, or one status: success, failure, in_progress, submitted, ...")] = None,
               user: Annotated[Optional[str], typer.Option("--user", help="Only this customer's tasks.")] = None,
               platform: Annotated[Optional[str], typer.Option(
                   "--api", help="Only midjourney, suno or video tasks.")] = None,
               limit: Annotated[int, typer.Option("-n", "--limit", help="How many tasks to show.")] = 50,
               config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Newest tasks first."""
    if status is not None and status.lower() not in STATUS_CHOICES:
        raise CliError(f"--status must be one of: {', '.join(STATUS_CHOICES)}.")
    if platform is not None and platform not in ("midjourney", "suno", "video"):
        raise CliError("--api must be midjourney, suno or video.")
    if not 1 <= limit <= 100_000:
        raise CliError("--limit must be between 1 and 100000.")
    store = open_store(settings_for(config))
    rows = store.tx(lambda t: repo.listing(t, status=status.lower() if status else None, user=user,
                                           platform=platform, limit=limit))
    if json:
        output.json_out(rows)
    else:
        output.table([_stamp(r) for r in rows], COLUMNS, empty="No tasks.")


@app.command("show")
def show(task_id: Annotated[str, typer.Argument(help="relaykit's task id (what the client was given).")],
         config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """One task: where it runs, what it produced, and its hold, charge or release."""
    store = open_store(settings_for(config))
    found = store.tx(lambda t: repo.detail(t, task_id))
    if found is None:
        raise CliError(f"There is no task '{task_id}'.")
    if json:
        output.json_out(found)
        return
    _stamp(found)
    for key in ("task_id", "platform", "action", "model", "user", "token_name", "channel", "upstream_id", "status",
                "progress", "quota", "hold_open", "submitted", "finished", "fail_reason", "poll_failures",
                "last_error", "hook_status", "parent_id"):
        value = found.get(key)
        if value not in (None, "", []):
            output.line(f"{key:>14}: {value}")
    if found["result"]:
        output.line(f"{'result':>14}: {_short(found['result'])}")
    for entry in found["ledger"]:
        output.line(f"{'ledger':>14}: {entry['kind']} {entry['amount']} ({entry['note']})")


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 400 else text[:397] + "..."
