"""relaykit user create|list|show|topup|adjust|disable|enable|passwd|logout"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..errors import CliError
from ..relay.pricing import usd_to_quota
from ..store import accounts, billing, sessions
from . import output
from .common import ConfigOpt, JsonOpt, open_store, parse_usd, settings_for

app = typer.Typer(help="Customers and their balances.", no_args_is_help=True)


@app.command("create")
def create(name: str, group: Annotated[str, typer.Option(help="Price group.")] = "default",
           password: Annotated[Optional[str], typer.Option(
               help="Password for the self-service API; '-' prompts (or reads a line from a pipe).")] = None,
           admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
           config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Create a customer (a customer without a password can use relay tokens only)."""
    s = settings_for(config)
    if group not in s.groups:
        raise CliError(f"There is no group '{group}' in the configuration; declared groups: {', '.join(s.groups)}.")
    if password == "-":  # kept off the command line, out of the shell history and `ps`
        password = read_new_password()
        accounts.check_password_strength(password)
    store = open_store(s)
    pw_hash = accounts.hash_password(password) if password else None
    user = store.tx(lambda t: accounts.create_user(t, name, group=group, role="admin" if admin else "customer",
                                                   password_hash=pw_hash))
    info = store.tx(lambda t: accounts.user_dict(t, user, s.billing.quota_per_usd))
    if json:
        output.json_out(info)
    else:
        output.say(f"Created user '{name}' in group '{group}'.")


@app.command("list")
def list_(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """List customers with their balances."""
    s = settings_for(config)
    store = open_store(s)
    rows = store.tx(lambda t: [accounts.user_dict(t, u, s.billing.quota_per_usd)
                               for u in t.User.select().order_by(t.User.id)])
    if json:
        output.json_out(rows)
    else:
        output.table(rows, [("id", "ID"), ("name", "Name"), ("group", "Group"), ("role", "Role"),
                            ("status", "Status"), ("usd", "Balance USD"), ("quota", "Quota"),
                            ("request_count", "Requests")], empty="No users yet.")


@app.command("show")
def show(name: str, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Show one customer's balance and latest ledger entries."""
    s = settings_for(config)
    store = open_store(s)

    def load(t: object) -> dict[str, object]:
        u = accounts.user_row(store.t, name)
        info = accounts.user_dict(store.t, u, s.billing.quota_per_usd)
        info["ledger"] = billing.ledger_entries(store.t, u.id)
        return info

    info = store.tx(load)
    if json:
        output.json_out(info)
        return
    output.say(f"{info['name']}  group {info['group']}  status {info['status']}  "
               f"balance ${info['usd']} ({info['quota']} quota)  requests {info['request_count']}")
    rows = [{**e, "when": output.when(e["created_at"])} for e in info["ledger"]]  # type: ignore[attr-defined]
    output.table(rows, [("when", "When"), ("kind", "Kind"), ("amount", "Amount"), ("request_id", "Reference"),
                        ("note", "Note")],
                 title="Latest ledger entries", empty="No ledger entries.")


@app.command("topup")
def topup(name: str, usd: Annotated[str, typer.Argument(help="Amount in US dollars.")],
          note: Annotated[str, typer.Option(help="Note for the ledger.")] = "",
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Add credit to a customer's balance (recorded in the ledger)."""
    s = settings_for(config)
    amount = usd_to_quota(parse_usd(usd), s.billing.quota_per_usd)
    if amount <= 0:
        raise CliError("The amount is smaller than one quota unit.")
    store = open_store(s)
    balance = store.tx(lambda t: billing.topup(t, name, amount, note=note or "topup by operator"))
    if json:
        output.json_out({"name": name, "added_quota": amount, "quota": balance,
                         "usd": round(balance / s.billing.quota_per_usd, 6)})
    else:
        output.say(f"Added ${usd} to '{name}'; balance is now ${balance / s.billing.quota_per_usd:.6f}.")


@app.command("adjust")
def adjust(name: str, usd: Annotated[str, typer.Argument(
               help="Signed amount in US dollars; put -- before a debit: adjust NAME --note WHY -- -1.50")],
           note: Annotated[str, typer.Option("--note", help="Why (kept in the ledger).")],
           config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Correct a balance either way (ledger kind 'adjust'); a debit never goes below zero."""
    s = settings_for(config)
    text = usd.strip()
    sign = -1 if text.startswith("-") else 1
    amount = usd_to_quota(parse_usd(text.lstrip("+-"), "amount"), s.billing.quota_per_usd)
    if amount <= 0:
        raise CliError("The amount is smaller than one quota unit.")
    if not note.strip():
        raise CliError("--note must say why the balance is adjusted.")
    store = open_store(s)
    balance = store.tx(lambda t: billing.adjust(t, name, sign * amount, note=note.strip()))
    qpu = s.billing.quota_per_usd
    if json:
        output.json_out({"name": name, "added_quota": sign * amount, "quota": balance, "usd": round(balance / qpu, 6)})
    else:
        output.say(f"Adjusted '{name}' by {'-' if sign < 0 else '+'}${amount / qpu:.6f}; "
                   f"balance is now ${balance / qpu:.6f}.")


def _set_status(name: str, status: str, config: str | None, json: bool) -> None:
    s = settings_for(config)
    store = open_store(s)
    user = store.tx(lambda t: accounts.set_user_status(t, name, status))
    if json:
        output.json_out(store.tx(lambda t: accounts.user_dict(t, user, s.billing.quota_per_usd)))
    else:
        output.say(f"User '{name}' is now {status}.")


@app.command("disable")
def disable(name: str, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Disable a customer: every token of theirs is refused within 2 seconds."""
    _set_status(name, "disabled", config, json)


@app.command("enable")
def enable(name: str, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Enable a disabled customer again."""
    _set_status(name, "active", config, json)


def read_new_password() -> str:
    """Prompt twice without echo on a terminal; read one line from a pipe (scripts)."""
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass
        first = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != first:
            raise CliError("The two passwords differ; nothing was changed.")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line:
        raise CliError("No password was given on standard input.")
    return line.rstrip("\r\n")


@app.command("passwd")
def passwd(name: str, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Set a customer's password for the self-service API (prompts; reads a line from a pipe).
    Every session of the customer ends."""
    s = settings_for(config)
    store = open_store(s)
    store.tx(lambda t: accounts.user_row(t, name))
    password = read_new_password()
    accounts.check_password_strength(password)
    pw_hash = accounts.hash_password(password)
    ended = store.tx(lambda t: accounts.set_password(t, name, pw_hash))
    if json:
        output.json_out({"name": name, "sessions_ended": ended})
    else:
        output.say(f"Password of '{name}' changed; {ended} session(s) ended.")


@app.command("logout")
def logout(name: str, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """End every self-service API session of a customer (their session tokens stop working)."""
    s = settings_for(config)
    store = open_store(s)
    ended = store.tx(lambda t: sessions.revoke_sessions(t, accounts.user_row(t, name).id))
    if json:
        output.json_out({"name": name, "sessions_ended": ended})
    else:
        output.say(f"Ended {ended} session(s) of '{name}'.")
