"""Authentication of relay tokens and the checks a token carries (SPEC §3).

Keys are read from any of the headers the official SDKs use; the key's hash is looked up
in the in-memory cache, and only an unknown hash costs one lookup in a worker thread.
Error messages are fixed sentences: they never echo the key, its hash or any table name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from ..domain import TokenInfo, UserInfo
from ..errors import AuthenticationFailed, PermissionDenied
from ..store.accounts import hash_key
from ..store.cache import AccountCache

MAX_KEY_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Caller:
    token: TokenInfo
    user: UserInfo

    @property
    def group(self) -> str:
        return self.token.group or self.user.group


def extract_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The relay key from the request.  Header names are looked up in lower case, which
    suits both aiohttp's case-insensitive headers and the fast lane's lower-cased dict."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    for name in ("x-api-key", "x-goog-api-key", "mj-api-secret"):
        v = headers.get(name)
        if v:
            return v.strip()
    v = query.get("key")
    return v.strip() if v else None


@lru_cache(maxsize=1024)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c, strict=False))
        except ValueError:
            continue
    return tuple(nets)


def ip_allowed(ip: str | None, cidrs: tuple[str, ...]) -> bool:
    if not cidrs:
        return True
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in _networks(cidrs))


class Authenticator:
    def __init__(self, cache: AccountCache, clock: Callable[[], float] = time.time) -> None:
        self._cache = cache
        self._clock = clock

    async def authenticate(self, key: str | None, client_ip: str | None) -> Caller:
        if not key:
            raise AuthenticationFailed("No API key was given; send it as 'Authorization: Bearer sk-...'.")
        if len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise AuthenticationFailed("The API key is not valid.")
        digest = hash_key(key)
        found = self._cache.token(digest)
        if found is None:
            if self._cache.known_missing(digest):
                raise AuthenticationFailed("The API key is not valid.")
            found = await asyncio.get_running_loop().run_in_executor(None, self._cache.fetch, digest)
            if found is None:
                raise AuthenticationFailed("The API key is not valid.")
        token, user = found
        if token.status != "active":
            raise AuthenticationFailed("This API key has been revoked or disabled.")
        if token.expires_at is not None and token.expires_at <= self._clock():
            raise AuthenticationFailed("This API key has expired.")
        if user.status != "active":
            raise PermissionDenied("The account this API key belongs to is disabled.", code="account_disabled")
        if not ip_allowed(client_ip, token.ips):
            raise PermissionDenied("This API key may not be used from your IP address.", code="ip_not_allowed")
        return Caller(token, user)


def check_model(caller: Caller, model: str) -> None:
    if caller.token.models and model not in caller.token.models:
        raise PermissionDenied(f"This API key may not use the model '{model}'.")
