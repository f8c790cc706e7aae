"""Repository for redemption cards (卡密): issue, redeem, void, list.

A card's code is shown once, when it is issued, and never stored.  The database keeps the
HMAC-SHA256 of the normalised code under the *card key* (a 256-bit secret kept in a file
beside the SQLite database, not in it) plus a short hint for people.  A database dump
alone therefore yields no usable code: the codes carry 140 random bits, and even a guess
cannot be checked offline without the key.

Redemption is one conditional claim, ``UPDATE card SET status='used' ... WHERE
code_hash=? AND status='unused' AND not expired``; only the caller whose UPDATE changed
the row credits the balance, and the ledger row is keyed ``card:<id>`` under the unique
(kind, request_id) index, so a logic slip still cannot credit a card twice (RELIABILITY
§2.2 techniques 2 and 5).  Claim, credit and ledger row share one transaction.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import peewee as pw

from ..errors import CliError, NotFoundError, RelayError
from ..settings import Settings, default_data_dir
from .db import sqlite_path
from .tables import Tables, now

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CODE_SYMBOLS = 28                               # 28 x 5 = 140 random bits
GROUP = 4
MAX_CODE_LENGTH = 128
_PREFIX = re.compile(r"^[A-Za-z0-9_]{0,16}-?$")
_STRIP = re.compile(r"[\s-]+")


class CardUnavailable(RelayError):
    """The card exists but cannot be redeemed (already redeemed, void or expired)."""

    status = 409
    kind = "conflict"
    code = "card_unavailable"


class CardNotFound(NotFoundError):
    """No card has this code: a wrong code, counted by the per-customer limiter."""

    code = "card_not_found"


@dataclass(frozen=True, slots=True)
class Redeemed:
    card_id: int
    amount: int
    balance: int
    hint: str


# --------------------------------------------------------------------------- the card key

def card_key_path(settings: Settings) -> Path:
    """Where the HMAC key lives: ``accounts.card_key_file``, else ``<db>.cardkey`` beside the
    SQLite file, else ``relaykit.cardkey`` in the data dir (PostgreSQL)."""
    if settings.accounts.card_key_file:
        return Path(settings.accounts.card_key_file)
    db = sqlite_path(settings.database_url)
    if db is not None and str(db) != ":memory:":
        return db.with_suffix(".cardkey")
    return default_data_dir() / "relaykit.cardkey"


def load_card_key(path: Path) -> bytes:
    """Read the key, creating it (mode 0600) on first use.  Two processes starting at once
    agree: the file appears atomically by hard link, and the loser reads the winner's key."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return _read_key(path)
    except OSError as exc:
        raise CliError(f"The card key file {path} cannot be created: {exc.strerror}.") from None


def _read_key(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"The card key file {path} cannot be read: {getattr(exc, 'strerror', exc)}.") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise CliError(f"The card key file {path} is damaged; restore it from your backup.")
    return key


# --------------------------------------------------------------------------- codes

def normalise(code: str) -> str:
    """Codes are compared without spaces or dashes and ignoring case."""
    return _STRIP.sub("", code).upper()


def code_hash(key: bytes, code: str) -> str:
    return hmac.new(key, normalise(code).encode("utf-8", "surrogatepass"), sha256).hexdigest()


def check_prefix(prefix: str) -> None:
    if not _PREFIX.match(prefix):
        raise CliError("A card prefix is up to 16 letters, digits or underscores, optionally ending in '-'.")


def new_code(prefix: str = "") -> str:
    n = secrets.randbits(CODE_SYMBOLS * 5)
    symbols = []
    for _ in range(CODE_SYMBOLS):
        n, d = divmod(n, 32)
        symbols.append(ALPHABET[d])
    body = "".join(symbols)
    grouped = "-".join(body[i:i + GROUP] for i in range(0, CODE_SYMBOLS, GROUP))
    if prefix and not prefix.endswith("-"):
        prefix += "-"
    return prefix + grouped


def hint_of(code: str) -> str:
    """What people see in lists: the prefix and the last four symbols."""
    head = code[:-(CODE_SYMBOLS + CODE_SYMBOLS // GROUP - 1)]
    return f"{head}...{code[-4:]}"


# --------------------------------------------------------------------------- repository

def issue(t: Tables, key: bytes, *, amount: int, count: int, prefix: str, expires_at: float | None,
          batch: str) -> list[str]:
    """Create ``count`` cards worth ``amount`` quota each; return their codes (shown once)."""
    codes = [new_code(prefix) for _ in range(count)]
    created = now()
    rows = [{"code_hash": code_hash(key, c), "hint": hint_of(c), "amount": amount, "status": "unused",
             "batch": batch, "expires_at": expires_at, "created_at": created} for c in codes]
    for i in range(0, len(rows), 1000):  # 7 000 bound parameters; SQLite allows 32 766
        t.Card.insert_many(rows[i:i + 1000]).execute()
    return codes


def _find(t: Tables, key: bytes, code_or_id: str) -> Any:
    text = code_or_id.strip()
    if text.isdigit():
        card = t.Card.get_or_none(t.Card.id == int(text))
    elif 0 < len(text) <= MAX_CODE_LENGTH:
        card = t.Card.get_or_none(t.Card.code_hash == code_hash(key, text))
    else:
        card = None
    if card is None:
        raise CardNotFound("This card code is not valid.")
    return card


def redeem(t: Tables, key: bytes, code: str, user_id: int, *, at: float | None = None) -> Redeemed:
    """Claim the card and credit ``user_id`` in the caller's transaction, or raise."""
    when = now() if at is None else at
    text = code.strip()
    if not text or len(text) > MAX_CODE_LENGTH or not text.isprintable():
        raise CardNotFound("This card code is not valid.")
    h = code_hash(key, text)
    C = t.Card
    claimed = (C.update(status="used", used_by=user_id, used_at=when)
               .where((C.code_hash == h) & (C.status == "unused") & (C.expires_at.is_null() | (C.expires_at > when)))
               .execute())
    card = C.get_or_none(C.code_hash == h)
    if claimed != 1:
        if card is None:
            raise CardNotFound("This card code is not valid.")
        if card.status == "used":
            raise CardUnavailable("This card has already been redeemed.", code="card_already_redeemed")
        if card.status == "void":
            raise CardUnavailable("This card has been voided by the operator.", code="card_void")
        raise CardUnavailable("This card has expired.", code="card_expired")
    credited = t.User.update(balance=t.User.balance + card.amount).where(t.User.id == user_id).execute()
    if credited != 1:
        # raising rolls the claim back with the rest of the transaction
        raise NotFoundError("The customer to credit does not exist.")
    t.Ledger.create(user=user_id, kind="card", amount=card.amount, request_id=f"card:{card.id}",
                    note=f"card {card.id} {card.hint}"[:255])
    balance = int(t.User.get_by_id(user_id).balance)
    return Redeemed(card.id, int(card.amount), balance, card.hint)


def void(t: Tables, key: bytes, code_or_id: str) -> Any:
    card = _find(t, key, code_or_id)
    changed = t.Card.update(status="void").where((t.Card.id == card.id) & (t.Card.status == "unused")).execute()
    if changed != 1:
        raise CardUnavailable(f"Card {card.id} is {card.status} and cannot be voided." if card.status != "void"
                              else f"Card {card.id} is already void.")
    return t.Card.get_by_id(card.id)


def status_of(card: Any, at: float) -> str:
    if card.status == "unused" and card.expires_at is not None and card.expires_at <= at:
        return "expired"
    return str(card.status)


STATUSES = ("unused", "used", "expired", "void")


def card_dict(card: Any, used_by_name: str | None, quota_per_usd: int, at: float) -> dict[str, Any]:
    return {"id": card.id, "hint": card.hint, "amount_quota": int(card.amount),
            "amount_usd": round(int(card.amount) / quota_per_usd, 6), "status": status_of(card, at),
            "batch": card.batch, "expires_at": card.expires_at, "created_at": card.created_at,
            "used_by": used_by_name, "used_at": card.used_at}


def list_cards(t: Tables, *, status: str | None, quota_per_usd: int, limit: int | None = None) -> list[dict[str, Any]]:
    C = t.Card
    at = now()
    q = (C.select(C, t.User.name.alias("user_name"))
         .join(t.User, pw.JOIN.LEFT_OUTER, on=(C.used_by == t.User.id)))
    not_expired = C.expires_at.is_null() | (C.expires_at > at)
    if status == "unused":
        q = q.where((C.status == "unused") & not_expired)
    elif status == "expired":
        q = q.where((C.status == "unused") & ~not_expired)
    elif status in ("used", "void"):
        q = q.where(C.status == status)
    elif status is not None:
        raise CliError(f"--status must be one of {', '.join(STATUSES)}, not '{status}'.")
    q = q.order_by(C.id.desc())
    if limit:
        q = q.limit(limit)
    return [card_dict(c, getattr(c, "user_name", None) if c.used_by else None, quota_per_usd, at)
            for c in q.objects()]
