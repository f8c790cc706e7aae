"""relaykit token create|list|show|revoke"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from ..errors import CliError
from ..relay.auth import _networks
from ..relay.pricing import usd_to_quota
from ..store import accounts
from . import output
from .common import ConfigOpt, JsonOpt, open_store, parse_duration, parse_usd, settings_for, split_list

app = typer.Typer(help="Relay API tokens (sk-...).", no_args_is_help=True)

COLUMNS = [("id", "ID"), ("name", "Name"), ("user", "User"), ("key", "Key"), ("status", "Status"),
           ("remain_usd", "Remaining USD"), ("used_quota", "Used quota"), ("group", "Group"),
           ("models", "Models"), ("expires_at", "Expires")]


@app.command("create")
def create(user: Annotated[str, typer.Option("--user", help="Owner of the token.")],
           name: Annotated[str, typer.Option("--name", help="A name to recognise the token by.")],
           quota: Annotated[Optional[str], typer.Option("--quota", help="Spending cap in USD.")] = None,
           unlimited: Annotated[bool, typer.Option("--unlimited", help="No cap (the default).")] = False,
           expires: Annotated[Optional[str], typer.Option("--expires", help="Lifetime, e.g. 30d.")] = None,
           group: Annotated[Optional[str], typer.Option("--group", help="Price group override.")] = None,
           models: Annotated[Optional[str], typer.Option("--models", help="Allowed models, comma separated.")] = None,
           ip: Annotated[Optional[str], typer.Option("--ip", help="Allowed CIDRs, comma separated.")] = None,
           rpm: Annotated[Optional[int], typer.Option("--rpm", help="Requests per minute.")] = None,
           tpm: Annotated[Optional[int], typer.Option("--tpm", help="Tokens per minute.")] = None,
           config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Create a token and print its key once (only a hash is stored)."""
    s = settings_for(config)
    if quota is not None and unlimited:
        raise CliError("Give either --quota or --unlimited, not both.")
    cap = usd_to_quota(parse_usd(quota, "quota"), s.billing.quota_per_usd) if quota is not None else None
    expires_at = time.time() + parse_duration(expires, "expiry") if expires else None
    if group is not None and group not in s.groups:
        raise CliError(f"There is no group '{group}' in the configuration.")
    ips = split_list(ip)
    if len(_networks(tuple(ips))) != len(ips):
        raise CliError(f"'{ip}' is not a comma separated list of IP addresses or CIDR ranges.")
    for n, label in ((rpm, "--rpm"), (tpm, "--tpm")):
        if n is not None and n < 1:
            raise CliError(f"{label} must be a positive number.")
    store = open_store(s)

    def make(t: object) -> tuple[object, str]:
        owner = accounts.user_row(store.t, user)
        return accounts.create_token(store.t, user_id=owner.id, name=name, quota=cap, expires_at=expires_at,
                                     group=group, models=split_list(models), ips=ips, rpm=rpm, tpm=tpm)

    row, key = store.tx(make)
    if json:
        output.json_out({"id": row.id, "key": key, "name": name, "user": user})  # type: ignore[attr-defined]
    else:
        output.say(f"Created token {row.id} '{name}' for {user}. Its key is shown only this time:")  # type: ignore[attr-defined]
        output.line(key)


@app.command("list")
def list_(user: Annotated[Optional[str], typer.Option("--user", help="Only this user's tokens.")] = None,
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """List tokens (keys are shown masked)."""
    s = settings_for(config)
    store = open_store(s)
    if user:
        store.tx(lambda t: accounts.user_row(t, user))
    rows = store.tx(lambda t: accounts.list_tokens(t, user, s.billing.quota_per_usd))
    if json:
        output.json_out(rows)
    else:
        output.table([{**r, "expires_at": output.when(r["expires_at"])} for r in rows], COLUMNS,
                     empty="No tokens yet.")


@app.command("show")
def show(token_id: Annotated[int, typer.Argument(metavar="ID")], config: ConfigOpt = None,
         json: JsonOpt = False) -> None:
    """Show one token (its key masked)."""
    s = settings_for(config)
    store = open_store(s)
    info = store.tx(lambda t: accounts.token_dict(accounts.token_row(t, token_id),
                                                  accounts.token_row(t, token_id).user.name, s.billing.quota_per_usd))
    if json:
        output.json_out(info)
    else:
        output.table([info], COLUMNS + [("ips", "IPs"), ("rpm", "RPM"), ("tpm", "TPM")])


@app.command("revoke")
def revoke(token_id: Annotated[int, typer.Argument(metavar="ID")], config: ConfigOpt = None,
           json: JsonOpt = False) -> None:
    """Revoke a token; a running server refuses it within 2 seconds."""
    s = settings_for(config)
    store = open_store(s)
    row = store.tx(lambda t: accounts.revoke_token(t, token_id))
    if json:
        output.json_out({"id": row.id, "status": row.status})
    else:
        output.say(f"Token {token_id} is revoked.")
