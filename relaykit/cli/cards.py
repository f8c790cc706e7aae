"""relaykit card issue|redeem|list|void — redemption cards (卡密).

Codes are printed (or written to ``--out``) once and never stored; see store/cards.py for
the card key that hashes them.  Cards are issued in transactions of 1 000, each committed
before its codes are written out, so an interrupted run leaves a CSV that lists exactly
the cards that exist (the rest of the batch was never created).
"""

from __future__ import annotations

import csv
import os
import secrets
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Annotated, Any, Optional

import typer

from ..errors import CliError
from ..relay.pricing import usd_to_quota
from ..store import accounts, cards
from ..store.cards import Redeemed
from . import output
from .common import ConfigOpt, JsonOpt, open_store, parse_duration, parse_usd, settings_for

app = typer.Typer(help="Redemption cards (卡密): issue, redeem, list, void.", no_args_is_help=True)

CHUNK = 1000
MAX_COUNT = 100_000
CSV_HEADER = ("code", "amount_usd", "expires_at")
COLUMNS = [("id", "ID"), ("hint", "Code"), ("amount_usd", "USD"), ("status", "Status"), ("batch", "Batch"),
           ("expires", "Expires"), ("used_by", "Used by"), ("used", "Used at")]


def iso_utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_out(path: Path) -> IO[str]:
    """Create the CSV before any card exists, so a bad path costs nothing (0600: it holds codes)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{path} already exists; choose a new file (card codes are never overwritten).") from None
    except OSError as exc:
        raise CliError(f"{path} cannot be created: {exc.strerror}.") from None
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


@app.command("issue")
def issue(amount: Annotated[str, typer.Option("--amount", help="Value of each card in US dollars.")],
          count: Annotated[int, typer.Option("--count", help="How many cards.")] = 1,
          prefix: Annotated[str, typer.Option("--prefix", help="Text before each code, e.g. SHOP.")] = "",
          expires: Annotated[Optional[str], typer.Option("--expires", help="Lifetime, e.g. 90d.")] = None,
          out: Annotated[Optional[Path], typer.Option("--out", help="Write the codes to this new CSV file.")] = None,
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Issue cards; the codes are shown (or written to --out) only this time."""
    s = settings_for(config)
    quota = usd_to_quota(parse_usd(amount), s.billing.quota_per_usd)
    if quota <= 0:
        raise CliError("The amount is smaller than one quota unit.")
    if not 1 <= count <= MAX_COUNT:
        raise CliError(f"--count must be from 1 to {MAX_COUNT:,}.")
    cards.check_prefix(prefix)
    expires_at = time.time() + parse_duration(expires, "expiry") if expires else None
    store = open_store(s)
    key = cards.load_card_key(cards.card_key_path(s))
    value = str((Decimal(quota) / Decimal(s.billing.quota_per_usd)).normalize())
    batch = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    sink = _open_out(out) if out is not None else (None if json else sys.stdout)
    writer = csv.writer(sink, lineterminator="\n") if sink is not None else None
    collected: list[dict[str, Any]] = []
    try:
        if writer is not None:
            writer.writerow(CSV_HEADER)
        with output.progress("Issuing cards", count) as advance:
            done = 0
            while done < count:
                n = min(CHUNK, count - done)
                codes = store.tx(lambda t: cards.issue(t, key, amount=quota, count=n, prefix=prefix,
                                                       expires_at=expires_at, batch=batch))
                for code in codes:
                    if writer is not None:
                        writer.writerow((code, value, iso_utc(expires_at)))
                    else:
                        collected.append({"code": code, "amount_usd": value, "expires_at": iso_utc(expires_at) or None})
                done += n
                advance(n)
    finally:
        if sink is not None:
            if out is not None:
                sink.close()
            else:
                sink.flush()
    summary = {"batch": batch, "count": count, "amount_usd": value, "amount_quota": quota,
               "expires_at": expires_at, "out": str(out) if out else None}
    if json:
        output.json_out({**summary, "cards": collected} if out is None else summary)
    elif out is not None:
        output.say(f"Issued {count} card(s) of ${value} (batch {batch}); codes written to {out}. "
                   "They are not stored anywhere else: keep the file safe.")


@app.command("redeem")
def redeem(code: Annotated[str, typer.Argument(help="The card code.")],
           user: Annotated[str, typer.Option("--user", help="The customer to credit.")],
           config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Redeem a card for a customer (exactly once, however many try at the same time)."""
    s = settings_for(config)
    store = open_store(s)
    key = cards.load_card_key(cards.card_key_path(s))

    def run(t: Any) -> Redeemed:
        return cards.redeem(t, key, code, int(accounts.user_row(t, user).id))

    done = store.tx(run)
    qpu = s.billing.quota_per_usd
    if json:
        output.json_out({"card_id": done.card_id, "card": done.hint, "user": user, "added_quota": done.amount,
                         "added_usd": round(done.amount / qpu, 6), "quota": done.balance,
                         "usd": round(done.balance / qpu, 6)})
    else:
        output.say(f"Redeemed card {done.card_id} ({done.hint}) for '{user}': +${done.amount / qpu:.6f}; "
                   f"balance is now ${done.balance / qpu:.6f}.")


@app.command("list")
def list_(status: Annotated[Optional[str], typer.Option("--status", help="unused, used, expired or void.")] = None,
          limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first (0: all).")] = 1000,
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """List cards (codes are shown only as hints)."""
    if status is not None and status not in cards.STATUSES:
        raise CliError(f"--status must be one of {', '.join(cards.STATUSES)}, not '{status}'.")
    if limit < 0:
        raise CliError("--limit must be 0 or more.")
    s = settings_for(config)
    store = open_store(s)
    rows = store.tx(lambda t: cards.list_cards(t, status=status, quota_per_usd=s.billing.quota_per_usd,
                                               limit=limit or None))
    if json:
        output.json_out(rows)
        return
    output.table([{**r, "expires": output.when(r["expires_at"]) if r["expires_at"] else "never",
                   "used": output.when(r["used_at"])} for r in rows], COLUMNS, empty="No cards.")


@app.command("void")
def void(code: Annotated[str, typer.Argument(metavar="CODE", help="The card code, or its ID from 'card list'.")],
         config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Void an unused card so it can never be redeemed."""
    s = settings_for(config)
    store = open_store(s)
    key = cards.load_card_key(cards.card_key_path(s))
    card = store.tx(lambda t: cards.void(t, key, code))
    if json:
        output.json_out({"id": card.id, "hint": card.hint, "status": card.status})
    else:
        output.say(f"Card {card.id} ({card.hint}) is now void.")
