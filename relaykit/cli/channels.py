"""relaykit channel list|test|enable|disable"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Optional

import typer

from ..domain import Channel
from ..errors import CliError
from ..relay.health import fingerprint, mask
from ..relay.probe import ProbeResult, probe
from ..relay.upstream import UpstreamPool
from ..settings import Settings
from ..store import channels as repo
from . import output
from .common import ConfigOpt, JsonOpt, open_store, settings_for

app = typer.Typer(help="Upstream channels (declared in YAML; runtime state in the database).",
                  no_args_is_help=True)


def _channel(s: Settings, name: str) -> Channel:
    ch = s.channel(name)
    if ch is None:
        raise CliError(f"There is no channel named '{name}' in {s.path}.")
    return ch


@app.command("list")
def list_(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Channels with their state and keys (masked)."""
    s = settings_for(config)
    store = open_store(s)
    states = store.tx(repo.states)
    rows: list[dict[str, Any]] = []
    for ch in s.channels:
        st = states.get(ch.name, {"enabled": True, "reason": ""})
        keys = []
        for k in ch.keys:
            dead = states.get(repo.key_row_name(ch.name, fingerprint(k)))
            keys.append({"key": mask(k), "fingerprint": fingerprint(k), "status": "disabled" if dead else "active",
                         "reason": dead["reason"] if dead else ""})
        status = "active"
        if not ch.enabled:
            status = "off in config"
        elif not st["enabled"]:
            status = "disabled"
        elif ch.keys and all(k["status"] == "disabled" for k in keys):
            status = "no live key"
        rows.append({"name": ch.name, "type": ch.type, "base_url": ch.base_url, "models": list(ch.client_models()),
                     "groups": list(ch.groups), "priority": ch.priority, "weight": ch.weight, "status": status,
                     "reason": st["reason"], "keys": keys})
    if json:
        output.json_out(rows)
        return
    table = [{**r, "keys": ", ".join(f"{k['key']} ({k['status']}{': ' + k['reason'] if k['reason'] else ''})"
                                     for k in r["keys"]) or "-"} for r in rows]
    output.table(table, [("name", "Name"), ("type", "Type"), ("status", "Status"), ("reason", "Reason"),
                         ("priority", "Priority"), ("weight", "Weight"), ("models", "Models"), ("keys", "Keys")],
                 empty="No channels are declared.")


@app.command("test")
def test(name: Annotated[Optional[str], typer.Argument(help="Channel to test.")] = None,
         all_: Annotated[bool, typer.Option("--all", help="Test every channel.")] = False,
         config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Send a tiny real request through a channel and print status and latency."""
    s = settings_for(config)
    if bool(name) == all_:
        raise CliError("Name one channel or pass --all.")
    targets = list(s.channels) if all_ else [_channel(s, name or "")]

    async def run() -> list[ProbeResult]:
        pool = UpstreamPool()
        try:
            out = []
            for ch in targets:
                if not ch.keys and ch.type != "mock":
                    out.append(ProbeResult(ch.name, ch.models[0] if ch.models else "", "-", None, 0,
                                           "the channel has no usable key"))
                else:
                    out.append(await probe(pool, ch, ch.keys[0] if ch.keys else ""))
            return out
        finally:
            await pool.close()

    results = asyncio.run(run())
    rows = [{"channel": r.channel, "model": r.model, "key": r.key, "status": r.status, "latency_ms": r.latency_ms,
             "ok": r.ok, "error": r.error} for r in results]
    if json:
        output.json_out(rows)
    else:
        output.table(rows, [("channel", "Channel"), ("model", "Model"), ("key", "Key"), ("status", "Status"),
                            ("latency_ms", "ms"), ("ok", "OK"), ("error", "Error")])
    if not all(r.ok for r in results):
        raise typer.Exit(1)


@app.command("enable")
def enable(name: str, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Put a channel back in service and revive its disabled keys."""
    s = settings_for(config)
    _channel(s, name)
    store = open_store(s)
    revived = store.tx(lambda t: (repo.set_channel_enabled(t, name, True), repo.revive_keys(t, name))[1])
    if json:
        output.json_out({"name": name, "status": "active", "revived_keys": revived})
    else:
        output.say(f"Channel '{name}' is enabled" + (f"; {revived} key(s) revived." if revived else "."))


@app.command("disable")
def disable(name: str, reason: Annotated[str, typer.Option(help="Why (shown in channel list).")] = "by operator",
            config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Take a channel out of service; running servers stop using it within 2 seconds."""
    s = settings_for(config)
    _channel(s, name)
    store = open_store(s)
    store.tx(lambda t: repo.set_channel_enabled(t, name, False, reason))
    if json:
        output.json_out({"name": name, "status": "disabled", "reason": reason})
    else:
        output.say(f"Channel '{name}' is disabled.")
