"""Outbound requests to addresses relaykit did not configure: ``notifyHook`` callbacks
(the client chose the URL) and media whose URL an upstream reported.

RELIABILITY §1 (SSRF): only http(s) URLs without credentials; every address the host
name resolves to must be public (no loopback, private, link-local, shared, multicast or
reserved range, also not hidden inside an IPv4-mapped IPv6 address); the connection goes
to an address that was checked (the check lives in the resolver aiohttp connects with,
so a second DNS answer cannot swap in another address); redirects are never followed.
An IP literal never reaches the resolver, so it is checked before connecting.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from ...errors import InvalidRequest

HOOK_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5, sock_read=10)
MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)


class Blocked(InvalidRequest):
    code = "address_not_allowed"


class BlockedAddress(OSError):
    """A host name that resolves to no public address (raised inside the connector)."""


def is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public(str(mapped))
    return bool(ip.is_global) and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                       or ip.is_link_local or ip.is_private or ip.is_unspecified)


def check_url(url: str, *, allow_private: bool = False) -> URL:
    """Parse and check an outbound URL; raise Blocked with one sentence when it may not be used."""
    try:
        u = URL(url)
    except (ValueError, TypeError):
        raise Blocked("The URL is not valid.") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise Blocked("Only http:// and https:// URLs with a host name are allowed.")
    if u.user is not None or u.password is not None:
        raise Blocked("URLs with user names or passwords are not allowed.")
    literal = _literal(u.host.strip("[]"))
    if not allow_private and literal is not None and not is_public(literal):
        raise Blocked("The URL points to a private, loopback or otherwise non-public address.")
    return u


def _literal(host: str) -> str | None:
    """The address an IP-literal host names, also in the legacy forms the system resolver
    accepts (``0x7f000001``, ``2130706433``, ``127.1``); None for a host name."""
    try:
        return str(ipaddress.ip_address(host.split("%", 1)[0]))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class PublicResolver(AbstractResolver):
    """Resolves like the system resolver, then drops every non-public address; a name with
    no public address fails to resolve (and so cannot be connected to)."""

    def __init__(self, allow_private: Callable[[], bool]) -> None:
        self._inner = ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if self._allow_private():
            return found
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise BlockedAddress(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


class Outbound:
    """One session, made on first use, whose every connection goes through PublicResolver."""

    def __init__(self, allow_private: Callable[[], bool]) -> None:
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=PublicResolver(self.allow_private), limit=64,
                                             ttl_dns_cache=None, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False,
                                                  skip_auto_headers=("User-Agent",))
        return self._session

    async def post_json(self, url: str, body: bytes) -> int:
        """POST a JSON body; return the status.  Raises Blocked, or OSError/aiohttp errors
        when the address is refused at connect time or the receiver is unreachable."""
        target = check_url(url, allow_private=self.allow_private())
        async with self.session().post(target, data=body, timeout=HOOK_TIMEOUT, allow_redirects=False,
                                       headers={"Content-Type": "application/json",
                                                "User-Agent": "relaykit-task-notify"}) as resp:
            await resp.read()
            return resp.status

    async def get(self, url: str) -> Any:
        """Open a GET (an ``aiohttp.ClientResponse`` the caller must release)."""
        target = check_url(url, allow_private=self.allow_private())
        return await self.session().get(target, timeout=MEDIA_TIMEOUT, allow_redirects=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)
