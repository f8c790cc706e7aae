"""Shared machinery of the small fakes: a loopback aiohttp app, the requests it saw, the
key it accepts, and a fault script (``fake.script = [503, 429]``: the next requests get
that status with an OpenAI-shaped error body before normal service resumes)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import LoopbackApp

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def words(text: str) -> int:
    """The fakes' token rule: one token per whitespace-separated word."""
    return len(text.split())


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    json: Any = None
    fields: dict[str, str] = field(default_factory=dict)   # multipart text fields
    files: list[tuple[str, str, int, str]] = field(default_factory=list)  # (field, filename, size, sha256)


class SmallFake(LoopbackApp):
    key_header = "Authorization"

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.seen: list[Seen] = []
        self.script: list[int] = []
        self.url = ""
        self.app = web.Application(middlewares=[self._gate], client_max_size=64 * 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self.routes(self.app.router)

    def routes(self, router: web.UrlDispatcher) -> None:
        raise NotImplementedError

    def presented_key(self, request: web.Request) -> str | None:
        value = request.headers.get(self.key_header, "")
        return value.removeprefix("Bearer ") if value else None

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.key is not None and self.presented_key(request) != self.key:
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
        if self.script:
            status = self.script.pop(0)
            await request.read()
            return web.json_response({"error": {"message": f"scripted {status}", "type": "server_error"}},
                                     status=status)
        return await handler(request)

    def record(self, request: web.Request, body: Any = None) -> Seen:
        seen = Seen(request.path_qs, {k.lower(): v for k, v in request.headers.items()}, body)
        self.seen.append(seen)
        return seen

    @property
    def last(self) -> Seen:
        return self.seen[-1]


async def json_of(request: web.Request) -> Any:
    return json.loads(await request.read())
