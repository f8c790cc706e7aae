"""relaykit logs tail|prune, relaykit usage"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Optional

import typer

from ..errors import CliError
from ..store import logs as repo
from . import output
from .common import ConfigOpt, JsonOpt, open_store, parse_duration, parse_when, settings_for

app = typer.Typer(help="Consumption records (request logs).", no_args_is_help=True)

COLUMNS = [("created", "When"), ("user", "User"), ("token_name", "Token"), ("model", "Model"),
           ("channel", "Channel"), ("prompt_tokens", "Prompt"), ("completion_tokens", "Completion"),
           ("quota", "Quota"), ("latency_ms", "ms"), ("stream", "Stream"), ("estimated", "Est."),
           ("status", "Status")]


def _stamp(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    for r in rows:
        r["created"] = datetime.fromtimestamp(float(r["created_at"])).strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[arg-type]
    return rows


@app.command("tail")
def tail(follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new records.")] = False,
         lines: Annotated[int, typer.Option("-n", "--lines", help="How many records to show.")] = 20,
         user: Annotated[Optional[str], typer.Option("--user")] = None,
         token: Annotated[Optional[int], typer.Option("--token", help="Token ID.")] = None,
         model: Annotated[Optional[str], typer.Option("--model")] = None,
         channel: Annotated[Optional[str], typer.Option("--channel")] = None,
         config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Newest consumption records; -f follows live (Ctrl-C stops)."""
    s = settings_for(config)
    store = open_store(s)
    filters = dict(user=user, token_id=token, model=model, channel=channel)
    rows = store.tx(lambda t: repo.tail(t, limit=lines, **filters))  # type: ignore[arg-type]
    if not follow:
        if json:
            output.json_out(rows)
        else:
            output.table(_stamp(rows), COLUMNS, empty="No consumption records.")
        return
    last = rows[-1]["id"] if rows else store.tx(lambda t: t.RequestLog.select().count() and
                                                  t.RequestLog.select().order_by(t.RequestLog.id.desc()).get().id)
    for r in _stamp(rows):
        _follow_line(r, json)
    try:
        while True:
            time.sleep(0.5)
            new = store.tx(lambda t: repo.tail(t, after_id=int(last), **filters))  # type: ignore[arg-type]
            for r in _stamp(new):
                _follow_line(r, json)
                last = r["id"]
    except KeyboardInterrupt:
        return


def _follow_line(r: dict[str, object], json: bool) -> None:
    if json:
        output.json_line(r)
    else:
        output.line(f"{r['created']}  {r['user']}  {r['model']}  via {r['channel'] or '-'}  "
                    f"{r['prompt_tokens']}+{r['completion_tokens']} tokens  {r['quota']} quota  "
                    f"{r['latency_ms']} ms  status {r['status']}{'  estimated' if r['estimated'] else ''}")


@app.command("prune")
def prune(older_than: Annotated[Optional[str], typer.Option("--older-than", help="Age, e.g. 7d "
                                                             "(default: logs.retention_days).")] = None,
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Delete request logs older than the cutoff (the ledger is never pruned)."""
    s = settings_for(config)
    seconds = parse_duration(older_than, "age") if older_than else s.logs.retention_days * 86400
    if seconds <= 0:
        raise CliError("The age must be greater than zero.")
    store = open_store(s)
    total = store.tx(lambda t: repo.count_older(t, seconds))
    deleted = 0
    with output.progress("Pruning request logs", total) as advance:
        while True:
            n = store.tx(lambda t: repo.prune(t, seconds))
            if not n:
                break
            deleted += n
            advance(n)
    if json:
        output.json_out({"deleted": deleted})
    else:
        output.say(f"Deleted {deleted} request log rows.")


usage_app = typer.Typer()


def usage(by: Annotated[str, typer.Option("--by", help="model, day, channel or token.")] = "model",
          user: Annotated[Optional[str], typer.Option("--user")] = None,
          since: Annotated[Optional[str], typer.Option("--since", help="YYYY-MM-DD or an age like 7d.")] = None,
          until: Annotated[Optional[str], typer.Option("--until", help="YYYY-MM-DD or an age like 1d.")] = None,
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Spend and tokens, grouped."""
    if by not in ("model", "day", "channel", "token"):
        raise CliError(f"--by must be model, day, channel or token, not '{by}'.")
    s = settings_for(config)
    store = open_store(s)
    rows = store.tx(lambda t: repo.usage(t, by=by, user=user, since=parse_when(since, "--since"),
                                         until=parse_when(until, "--until")))
    for r in rows:
        r["usd"] = round(r["quota"] / s.billing.quota_per_usd, 6)
    if json:
        output.json_out(rows)
    else:
        output.table(rows, [(by, by.capitalize()), ("requests", "Requests"), ("prompt_tokens", "Prompt tokens"),
                            ("completion_tokens", "Completion tokens"), ("usd", "USD"), ("quota", "Quota")],
                     empty="No usage in this period.")
