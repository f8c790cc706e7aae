"""Repository for customers and their relay tokens.

Functions take the tables and plain arguments and return plain dicts or domain objects;
they run either in the writer thread (server) or directly (CLI).  Relay token keys are
generated here, returned once, and only their SHA-256 is stored: keys are 256-bit random,
so a fast hash is enough, and lookups go by hash (no comparison on secret bytes).
"""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Any

import peewee as pw

from ..errors import CliError, NotFoundError
from .tables import Tables, now

_ALPHABET = string.ascii_letters + string.digits


def new_token_key() -> str:
    return "sk-" + "".join(secrets.choice(_ALPHABET) for _ in range(48))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_hint(key: str) -> str:
    return f"{key[:3]}...{key[-4:]}"


def bump_changes(t: Tables) -> None:
    """Tell every running server's caches to reload (they poll this counter)."""
    t.Meta.update(value=t.Meta.value + 1).where(t.Meta.key == "change_counter").execute()


def change_counter(t: Tables) -> int:
    row = t.Meta.get_or_none(t.Meta.key == "change_counter")
    return int(row.value) if row else 0


def user_row(t: Tables, name: str) -> Any:
    user = t.User.get_or_none(t.User.name == name)
    if user is None:
        raise NotFoundError(f"There is no user named '{name}'.")
    return user


def user_dict(t: Tables, u: Any, quota_per_usd: int) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "group": u.group, "role": u.role, "status": u.status,
            "quota": int(u.balance), "usd": round(int(u.balance) / quota_per_usd, 6),
            "used_quota": int(u.used_quota), "request_count": int(u.request_count),
            "created_at": u.created_at}


def check_user_name(name: str) -> None:
    if not name or len(name) > 64 or any(c.isspace() for c in name) or not name.isprintable():
        raise CliError("A user name must be 1 to 64 printable characters without spaces.")


def create_user(t: Tables, name: str, *, group: str = "default", role: str = "customer",
                password_hash: str | None = None) -> Any:
    check_user_name(name)
    try:
        with t.db.atomic():
            user = t.User.create(name=name, group=group, role=role, password_hash=password_hash)
    except pw.IntegrityError:
        raise CliError(f"A user named '{name}' already exists.") from None
    bump_changes(t)
    return user


def set_user_status(t: Tables, name: str, status: str) -> Any:
    user = user_row(t, name)
    t.User.update(status=status).where(t.User.id == user.id).execute()
    bump_changes(t)
    return user_row(t, name)


def create_token(t: Tables, *, user_id: int, name: str, quota: int | None, expires_at: float | None,
                 group: str | None, models: list[str], ips: list[str], rpm: int | None,
                 tpm: int | None) -> tuple[Any, str]:
    """Create a token; return (row, plaintext key).  The key is never stored."""
    key = new_token_key()
    row = t.Token.create(user=user_id, name=name, key_hash=hash_key(key), key_hint=key_hint(key),
                         unlimited=quota is None, remain_quota=quota or 0, expires_at=expires_at,
                         group=group, models=",".join(models), ips=",".join(ips), rpm=rpm, tpm=tpm)
    bump_changes(t)
    return row, key


def token_row(t: Tables, token_id: int) -> Any:
    row = t.Token.get_or_none(t.Token.id == token_id)
    if row is None:
        raise NotFoundError(f"There is no token with id {token_id}.")
    return row


def revoke_token(t: Tables, token_id: int) -> Any:
    row = token_row(t, token_id)
    t.Token.update(status="revoked").where(t.Token.id == token_id).execute()
    bump_changes(t)
    return token_row(t, token_id)


def token_dict(row: Any, user_name: str, quota_per_usd: int) -> dict[str, Any]:
    status = row.status
    if status == "active" and row.expires_at is not None and row.expires_at <= now():
        status = "expired"
    elif status == "active" and not row.unlimited and row.remain_quota <= 0:
        status = "exhausted"
    return {
        "id": row.id, "name": row.name, "user": user_name, "key": row.key_hint, "status": status,
        "unlimited": bool(row.unlimited),
        "remain_quota": None if row.unlimited else int(row.remain_quota),
        "remain_usd": None if row.unlimited else round(int(row.remain_quota) / quota_per_usd, 6),
        "used_quota": int(row.used_quota), "expires_at": row.expires_at, "group": row.group,
        "models": [m for m in row.models.split(",") if m], "ips": [i for i in row.ips.split(",") if i],
        "rpm": row.rpm, "tpm": row.tpm, "created_at": row.created_at,
    }


def list_tokens(t: Tables, user_name: str | None, quota_per_usd: int) -> list[dict[str, Any]]:
    q = t.Token.select(t.Token, t.User.name).join(t.User)
    if user_name:
        q = q.where(t.User.name == user_name)
    return [token_dict(r, r.user.name, quota_per_usd) for r in q.order_by(t.Token.id)]


def hash_password(password: str) -> str:
    """scrypt (standard library) with a random salt, in a self-describing string."""
    salt = secrets.token_bytes(16)
    n, r, p = 2**14, 8, 1
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return secrets.compare_digest(got.hex(), digest)


def set_password(t: Tables, name: str, password_hash: str) -> int:
    """Replace a customer's password and end every session they have; return how many ended."""
    from .sessions import revoke_sessions
    user = user_row(t, name)
    t.User.update(password_hash=password_hash).where(t.User.id == user.id).execute()
    return revoke_sessions(t, user.id)


def check_password_strength(password: str) -> None:
    if len(password) < 8:
        raise CliError("A password must be at least 8 characters long.")
    if len(password) > 256:
        raise CliError("A password must be at most 256 characters long.")


# a real scrypt hash of a password nobody uses: checking against it costs what a real check costs
_DUMMY_HASH = ("scrypt$16384$8$1$9f1f8bdd3fd9d5aba6a7b04f4bdd47f9$"
               "53102f969da77a763f5d59c9fd4344ee744ba9800832603b809b3d910c3a3f9f")


def verify_password_or_dummy(password: str, stored: str | None) -> bool:
    """verify_password that costs the same when the user does not exist or has no password
    (so response times do not tell which user names exist)."""
    try:
        if not stored:
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, stored)
    except (ValueError, TypeError):
        return False
