"""Shared machinery of the fake task upstreams: an aiohttp app on 127.0.0.1:0 that keeps
its tasks in memory and moves each one a step forward on every poll.

Knobs every fake has (set them before the relay submits):

``steps``       polls until a task finishes (default 2: one "in progress", then done)
``outcome``     "success" or "failure" for tasks submitted from now on
``hold``        while True, no task finishes (a relay restart can happen meanwhile)
``refuse``      queue of vendor refusals for the next submits (each fake documents its form)
``down``        answer every request with 503 (a dead upstream)

``requests`` records (method, path, headers, JSON body or form) of everything received;
``polls`` counts polls per upstream task id.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import LoopbackApp


FORM: web.RequestKey[dict[str, Any]] = web.RequestKey("fake.form", dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeTask:
    id: str
    kind: str
    body: dict[str, Any]
    outcome: str
    polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class FakeTaskServer(LoopbackApp):
    def __init__(self, key: str) -> None:
        self.key = key
        self.url = ""
        self.steps = 2
        self.outcome = "success"
        self.hold = False
        self.down = False
        self.refuse: list[Any] = []
        self.tasks: dict[str, FakeTask] = {}
        self.requests: list[Seen] = []
        self.polls: Counter[str] = Counter()
        self.app = web.Application(middlewares=[self._record])
        self._runner: web.AppRunner | None = None
        self.routes(self.app.router)

    # subclasses add their vendor's routes
    def routes(self, r: web.UrlDispatcher) -> None:
        raise NotImplementedError

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body: Any = None
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            body = {k: (v if isinstance(v, str) else {"filename": v.filename, "bytes": v.file.read()})
                    for k, v in form.items()}
            request[FORM] = body
        elif request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
        self.requests.append(Seen(request.method, request.path_qs, {k.lower(): v for k, v in request.headers.items()},
                                  body))
        if self.down:
            return web.json_response({"error": "down"}, status=503)
        return await handler(request)

    def submitted(self) -> list[Seen]:
        return [s for s in self.requests if s.method == "POST" and "fetch" not in s.path]

    def new_task(self, kind: str, body: dict[str, Any], task_id: str | None = None) -> FakeTask:
        task = FakeTask(task_id or uuid.uuid4().hex, kind, body, self.outcome)
        self.tasks[task.id] = task
        return task

    def advance(self, task: FakeTask) -> str:
        """One poll: "running" until ``steps`` polls were made (and not ``hold``), then the outcome."""
        task.polls += 1
        self.polls[task.id] += 1
        if self.hold or task.polls < self.steps:
            return "running"
        return task.outcome


    async def __aenter__(self) -> FakeTaskServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class FakeHook(FakeTaskServer):
    """A notifyHook receiver: records every POST to /hook."""

    def __init__(self) -> None:
        super().__init__("")

    def routes(self, r: web.UrlDispatcher) -> None:
        r.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    @property
    def calls(self) -> list[Any]:
        return [s.body for s in self.requests if s.path == "/hook"]
