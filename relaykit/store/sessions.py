"""Repository for self-service API sessions (``POST /api/user/login``).

A session token is 256 random bits shown once, at login; only its SHA-256 is stored (a
fast hash is enough for a secret that long, and lookups go by hash).  Sessions expire
after ``accounts.session_days`` and are revoked by ``relaykit user logout NAME``, by a
password change and by disabling the customer (the lookup checks the user's status).
Session tokens start with ``rks-`` and relay tokens with ``sk-``, so each door can name
the other kind in its refusal, but neither door would find the other's hash anyway.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from .tables import Tables, now

PREFIX = "rks-"


def hash_session(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_session(t: Tables, user_id: int, *, lifetime: float, client_ip: str = "") -> tuple[str, float]:
    """Return (token, expires_at); the token itself is not stored."""
    token = PREFIX + secrets.token_urlsafe(32)
    expires_at = now() + lifetime
    t.Session.create(user=user_id, token_hash=hash_session(token), expires_at=expires_at, client_ip=client_ip[:64])
    return token, expires_at


def session_user(t: Tables, token: str, at: float | None = None) -> Any | None:
    """The user row behind a live session, or None (unknown, expired or revoked)."""
    when = now() if at is None else at
    S = t.Session
    row = (S.select(S, t.User).join(t.User)
           .where((S.token_hash == hash_session(token)) & S.revoked_at.is_null() & (S.expires_at > when))
           .first())
    return None if row is None else row.user


def revoke_sessions(t: Tables, user_id: int) -> int:
    """End every live session of the user; return how many there were."""
    S = t.Session
    return int(S.update(revoked_at=now()).where((S.user == user_id) & S.revoked_at.is_null()
                                                 & (S.expires_at > now())).execute())


def revoke_session(t: Tables, token: str) -> int:
    S = t.Session
    return int(S.update(revoked_at=now()).where((S.token_hash == hash_session(token))
                                                 & S.revoked_at.is_null()).execute())


def prune_sessions(t: Tables, older_than: float = 86400.0) -> int:
    """Delete sessions that ended (expired or revoked) more than ``older_than`` seconds ago."""
    S = t.Session
    cutoff = now() - older_than
    return int(S.delete().where((S.expires_at < cutoff) | (S.revoked_at < cutoff)).execute())
