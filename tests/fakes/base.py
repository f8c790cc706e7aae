"""Shared machinery for the fake upstream AI providers.

Every fake is a small aiohttp application bound to ``127.0.0.1`` on a random
port.  A test starts it, points relaykit (or an SDK) at ``await fake.start()``
and afterwards inspects ``fake.requests`` / ``fake.last_usage``.

Fault injection is driven by ``fake.mode`` (default ``"ok"``) and the queue
``fake.script``: each request pops the first entry of ``script`` if there is
one, otherwise it uses ``mode``.  Modes (RELIABILITY.md §5.1):

``ok``                      normal answer (JSON or SSE, as the request asked)
``no_usage``                same answer, but no usage anywhere in it
``status:CODE[:RETRY]``     HTTP CODE with the vendor's error body; with
                            ``RETRY`` also a ``Retry-After: RETRY`` header
``echo_key_401``            401 whose body quotes the credential received
                            (Authorization / x-api-key / x-goog-api-key / ?key=)
``stall_before_headers[:S]``  sleep S (default ``stall_seconds``) before anything
``stall_after_headers[:S]``   send status + headers, then sleep, then the body
``stall_mid_stream[:S]``    send 3 SSE events (half the body for JSON), sleep,
                            then the rest
``reset_before_headers``    abort the connection (TCP RST) without answering
``reset_mid_stream``        send 5 SSE events (half the body for JSON), then
                            abort the connection (TCP RST)
``error_mid_stream``        send 3 SSE events, then the vendor's in-stream
                            error event, then end the stream
``truncated_sse``           stream stops before its closing events: no finish
                            reason, no usage, no terminator (the HTTP body
                            itself ends cleanly)
``no_done``                 everything except the bare terminator
                            (``data: [DONE]`` / ``message_stop``); same as
                            ``ok`` for vendors without one
``garbage_json``            200 with a body (or SSE data) that is not JSON
``html_200``                200 ``text/html`` error page
``slow_stream[:DELAY[:N]]`` answer of exactly N words (default ``n_chunks``),
                            one SSE event every DELAY seconds (``chunk_delay``)

For stall/reset counts, "events" are SSE frames; when a stream is shorter the
fault happens before its last frame.  Stream-only modes (``truncated_sse``,
``no_done``, ``error_mid_stream``) behave like ``ok`` on JSON answers.

Deterministic content and billing: see :func:`count_words` and
:meth:`FakeUpstream.plan_answer`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

from aiohttp import web

__all__ = [
    "Answer",
    "FakeUpstream",
    "MODES",
    "REASONING_TEXT",
    "Recorded",
    "Reply",
    "count_words",
    "flatten_text",
    "sse_frame",
]

#: Mode names understood by every fake (arguments after ``:`` allowed where
#: documented in the module docstring).
MODES = frozenset(
    {
        "ok",
        "no_usage",
        "status",
        "echo_key_401",
        "stall_before_headers",
        "stall_after_headers",
        "stall_mid_stream",
        "reset_before_headers",
        "reset_mid_stream",
        "error_mid_stream",
        "truncated_sse",
        "no_done",
        "garbage_json",
        "html_200",
        "slow_stream",
    }
)

#: The chain of thought every fake "thinks" when thinking/reasoning is asked
#: for.  9 words, so ``reasoning_tokens == 9``.
REASONING_TEXT = "Let me think step by step about this request."

#: Arguments of the one tool call the fakes ever make.
TOOL_NAME = "get_weather"
TOOL_ARGS = {"city": "Paris"}

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    b"<body><h1>Bad Gateway</h1><p>The upstream is having a bad day.</p>"
    b"<hr><center>cloudflare</center></body></html>\n"
)


def count_words(text: str | None) -> int:
    """Token rule of every fake: one token per whitespace-separated word.

    ``prompt_tokens`` is the sum of ``count_words`` over every text of the
    request's conversation: system prompt / instructions, every text part of
    every message (user and assistant), and every tool result (flattened with
    :func:`flatten_text`).  Tool definitions, tool-call arguments sent back in
    history, thinking blocks, images and other non-text parts count 0.

    ``completion_tokens`` is ``count_words`` of the answer text, plus
    ``count_words(name) + count_words(arguments_json)`` of a tool call, plus
    the reasoning words when reasoning was asked for (``reasoning_tokens``).
    """
    if not text:
        return 0
    return len(text.split())


def flatten_text(value: Any) -> str:
    """Turn a tool result (string, content-part list or JSON object) into text.

    Strings are kept; lists are flattened item by item; a dict with a
    ``type`` key is a content part and contributes its ``text`` (if any);
    any other dict contributes its scalar values (so Gemini's
    ``{"result": "21C and sunny"}`` becomes ``"21C and sunny"``).
    """
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return " ".join(t for t in (flatten_text(v) for v in value) if t)
    if isinstance(value, dict):
        if "type" in value:
            text = value.get("text")
            return text if isinstance(text, str) else ""
        return " ".join(t for t in (flatten_text(v) for v in value.values()) if t)
    return ""


class _HeaderDict(dict):
    """A plain dict whose keys are lower-case and whose lookups ignore case."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for key, value in items:
            super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: str
    #: lower-cased keys; lookups are case-insensitive
    headers: dict[str, str]
    body: bytes
    #: parsed JSON body, or None when the body is empty or not JSON
    json: Any
    #: the mode that was applied to this request ("" for unrouted paths)
    mode: str = ""
    #: honest usage of the answer generated for this request (see last_usage)
    usage: dict[str, int] | None = None
    #: True when the client went away while this request was being answered
    cancelled: bool = False


@dataclass
class Answer:
    """What the fake "model" says, independent of the vendor's wire format."""

    kind: str  # "text" or "tool_call"
    text: str = ""
    #: the deltas of ``text``: words, each but the first with a leading space
    deltas: list[str] = field(default_factory=list)
    #: chain of thought text when reasoning was asked for, else None
    reasoning: str | None = None
    reasoning_deltas: list[str] = field(default_factory=list)
    tool_name: str = ""
    tool_args: dict[str, Any] = field(default_factory=dict)
    #: arguments as a JSON string and that string cut in (at least) two parts
    tool_args_json: str = ""
    tool_args_fragments: list[str] = field(default_factory=list)
    #: normalised usage: prompt_tokens, completion_tokens, total_tokens,
    #: reasoning_tokens, cache_read_tokens, cache_write_tokens, input_tokens
    usage: dict[str, int] = field(default_factory=dict)
    #: the text was cut by the request's output token limit
    truncated: bool = False


@dataclass
class Reply:
    """A successful answer rendered in a vendor's wire format.

    Either ``json_body`` (a JSON answer) or ``frames`` (an SSE/streamed
    answer) is set.  ``n_tail`` is the number of trailing frames that close
    the stream (finish reason, usage, terminator) and ``terminator`` tells
    whether the very last frame is a bare terminator.
    """

    status: int = 200
    json_body: Any = None
    frames: list[bytes] | None = None
    n_tail: int = 0
    terminator: bool = False
    error_frame: bytes = b""
    garbage_frames: list[bytes] = field(default_factory=list)
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)


_RECORD_KEY = web.RequestKey("fake_record", Recorded)


def _words_to_deltas(words: list[str]) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class LoopbackApp:
    """An aiohttp app served on 127.0.0.1 at a free port: ``await start()`` gives its
    URL, ``await stop()`` ends it.  Subclasses set ``self.app`` (and routes) first."""

    app: web.Application
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class FakeUpstream:
    """Base class: an aiohttp app on loopback that records what it receives.

    Subclasses add routes in :meth:`setup_routes` and implement the vendor
    specifics (:meth:`check_auth`, :meth:`error_body`, :meth:`received_key`).
    """

    #: used in the answer text: "Hello from fake-<vendor>! ..."
    vendor = "generic"
    #: model ids listed by the models endpoint
    default_models: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        keys: Iterable[str] | None = None,
        mode: str = "ok",
        models: Iterable[str] | None = None,
    ) -> None:
        self.app = web.Application(middlewares=[self._middleware])
        #: accepted API keys; empty set accepts anything (even no key)
        self.keys: set[str] = set(keys or ())
        self.models: list[str] = list(models or self.default_models)
        self.requests: list[Recorded] = []
        self.script: list[str] = []
        self._mode = "ok"
        self.mode = mode
        self.stall_seconds: float = 60.0
        self.chunk_delay: float = 0.05
        self.n_chunks: int = 20
        #: merged over the computed usage (normalised keys, see Answer.usage)
        self.usage_override: dict[str, int] | None = None
        #: honest usage of the last generated answer (set even when the mode
        #: kept it off the wire, e.g. ``no_usage`` / ``truncated_sse``)
        self.last_usage: dict[str, int] | None = None
        #: the usage object as last put on the wire (vendor shape), or None
        self.last_usage_wire: dict[str, Any] | None = None
        self.active = 0
        self.cancelled = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._changed: asyncio.Event | None = None
        self._counter = 0
        self.setup_routes(self.app.router)

    # ------------------------------------------------------------------ life

    async def start(self, port: int = 0) -> str:
        """Bind 127.0.0.1 (on a free port unless ``port`` is given, e.g. the
        previous port when restarting after :meth:`stop`); return
        ``http://127.0.0.1:PORT``."""
        self._changed = asyncio.Event()
        self._stopping = False
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        """Cancel in-flight handlers (not counted as ``cancelled``) and close."""
        self._stopping = True
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeUpstream":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ test API

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.parse_mode(value)  # raises ValueError on typos
        self._mode = value

    @property
    def last_request(self) -> Recorded | None:
        return self.requests[-1] if self.requests else None

    def clear(self) -> None:
        """Forget recorded requests, counters and usage (not mode/script)."""
        self.requests.clear()
        self.cancelled = 0
        self.last_usage = None
        self.last_usage_wire = None

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (re-checked on every request
        start/end and cancellation); TimeoutError after ``timeout`` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"fake-{self.vendor}: condition not met within {timeout}s "
                f"(requests={len(self.requests)} active={self.active} "
                f"cancelled={self.cancelled})"
            ) from None

    async def wait_cancelled(self, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` requests were abandoned by their client."""
        await self.wait_for(lambda: self.cancelled >= n, timeout)

    async def wait_requests(self, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` requests have been received."""
        await self.wait_for(lambda: len(self.requests) >= n, timeout)

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no request is in flight."""
        await self.wait_for(lambda: self.active == 0, timeout)

    @staticmethod
    def parse_mode(mode: str) -> tuple[str, list[str]]:
        """Split ``"status:429:2"`` into ``("status", ["429", "2"])``."""
        name, *args = mode.split(":")
        if name not in MODES:
            raise ValueError(f"unknown fake upstream mode {mode!r}; known: {sorted(MODES)}")
        if name == "status" and (not args or not args[0].isdigit()):
            raise ValueError(f"mode {mode!r} needs a status code, e.g. status:429")
        try:
            for arg in args[1:] if name == "status" else args:
                float(arg)
        except ValueError:
            raise ValueError(f"bad numeric argument in fake mode {mode!r}") from None
        return name, args

    # ------------------------------------------------------- for subclasses

    def setup_routes(self, router: web.UrlDispatcher) -> None:
        """Register the vendor's routes."""

    def received_key(self, request: web.Request) -> str | None:
        """The raw credential as received (header value or query key)."""
        return request.headers.get("Authorization")

    def check_auth(self, request: web.Request) -> web.StreamResponse | None:
        """Return an error response when the credential is not accepted."""
        return None

    def error_body(self, status: int, message: str) -> Any:
        """The vendor's JSON error body for ``status``."""
        return {"error": {"code": status, "message": message}}

    @staticmethod
    def record_of(request: web.Request) -> Recorded:
        """The :class:`Recorded` entry of a request being handled."""
        return request[_RECORD_KEY]

    def next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter:06d}"

    def error_response(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(self.error_body(status, message)).encode(),
            content_type="application/json",
            headers=headers,
        )

    # ---------------------------------------------------- content planning

    def plan_answer(
        self,
        record: Recorded,
        *,
        prompt_texts: list[str],
        last_role: str,
        last_user_text: str,
        tool_result: str | None,
        has_tools: bool,
        reasoning: bool,
        hidden_reasoning: bool = False,
        limit: int | None = None,
    ) -> Answer:
        """Decide what the fake model answers, deterministically.

        * the last message is a tool result -> text
          ``"Hello from fake-<vendor>! The tool said: <result>"``
        * tools were declared and the last message is a user message whose
          text contains "weather" -> tool call ``get_weather({"city": "Paris"})``
        * otherwise -> ``"Hello from fake-<vendor>! You said: <last user text>"``
        * in ``slow_stream`` mode the text answer is cut or padded (``tick1``,
          ``tick2`` ...) to exactly N words so that there are N text deltas.

        ``reasoning`` adds :data:`REASONING_TEXT` as visible thinking;
        ``hidden_reasoning`` only bills it (OpenAI o-series style).
        ``limit`` (the request's max output tokens) cuts a text answer to
        ``limit - reasoning_tokens`` words and sets ``answer.truncated``.
        The usage is recorded on ``record.usage`` and ``self.last_usage``.
        """
        mode_name, mode_args = self.parse_mode(record.mode or "ok")
        answer: Answer
        if tool_result is not None:
            answer = Answer(kind="text", text=f"Hello from fake-{self.vendor}! The tool said: {tool_result}")
        elif has_tools and last_role == "user" and "weather" in last_user_text.lower():
            args_json = json.dumps(TOOL_ARGS)
            cut = args_json.index(" ") + 1  # '{"city": ' | '"Paris"}'
            answer = Answer(
                kind="tool_call",
                tool_name=TOOL_NAME,
                tool_args=dict(TOOL_ARGS),
                tool_args_json=args_json,
                tool_args_fragments=[args_json[:cut], args_json[cut:]],
            )
        else:
            answer = Answer(kind="text", text=f"Hello from fake-{self.vendor}! You said: {last_user_text}")
        if answer.kind == "text":
            words = answer.text.split()
            if mode_name == "slow_stream":
                n = int(float(mode_args[1])) if len(mode_args) > 1 else self.n_chunks
                words = (words + [f"tick{i}" for i in range(1, n + 1)])[:n] if len(words) < n else words[:n]
            answer.text = " ".join(words)
            answer.deltas = _words_to_deltas(words)
        if reasoning or hidden_reasoning:
            answer.reasoning = REASONING_TEXT
            answer.reasoning_deltas = _words_to_deltas(REASONING_TEXT.split())
        if limit is not None and answer.kind == "text":
            room = max(0, limit - count_words(answer.reasoning))
            words = answer.text.split()
            if len(words) > room:
                answer.truncated = True
                answer.text = " ".join(words[:room])
                answer.deltas = _words_to_deltas(words[:room])

        reasoning_tokens = count_words(answer.reasoning)
        if answer.kind == "tool_call":
            visible = count_words(answer.tool_name) + count_words(answer.tool_args_json)
        else:
            visible = count_words(answer.text)
        usage = {
            "prompt_tokens": sum(count_words(t) for t in prompt_texts),
            "completion_tokens": visible + reasoning_tokens,
            "reasoning_tokens": reasoning_tokens,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
        }
        override = dict(self.usage_override or {})
        usage.update({k: v for k, v in override.items() if k not in ("total_tokens", "input_tokens")})
        usage["total_tokens"] = override.get(
            "total_tokens", usage["prompt_tokens"] + usage["completion_tokens"]
        )
        usage["input_tokens"] = override.get(
            "input_tokens",
            max(0, usage["prompt_tokens"] - usage["cache_read_tokens"] - usage["cache_write_tokens"]),
        )
        answer.usage = usage
        if not reasoning:  # billed but not shown
            answer.reasoning = None
            answer.reasoning_deltas = []
        record.usage = dict(usage)
        self.last_usage = dict(usage)
        return answer

    @staticmethod
    def signature_for(text: str) -> str:
        """A deterministic opaque "signature" / encrypted blob for ``text``."""
        return base64.b64encode(hashlib.sha256(text.encode()).digest() * 2).decode()

    # -------------------------------------------------------------- serving

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        record = Recorded(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=_HeaderDict(request.headers.items()),
            body=body,
            json=parsed,
        )
        request[_RECORD_KEY] = record
        self.requests.append(record)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.active += 1
        self._notify()
        try:
            return await handler(request)
        except (asyncio.CancelledError, ConnectionResetError) as exc:
            if not self._stopping and not record.cancelled:
                record.cancelled = True
                self.cancelled += 1
            if isinstance(exc, asyncio.CancelledError):
                raise
            # the client is gone: aiohttp will fail quietly writing this one
            return web.Response(status=499)
        finally:
            self.active -= 1
            if task is not None:
                self._tasks.discard(task)
            self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _take_mode(self) -> str:
        return self.script.pop(0) if self.script else self._mode

    @staticmethod
    def _reset(request: web.Request) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0)."""
        transport = request.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()

    def _stall_time(self, args: list[str]) -> float:
        return float(args[0]) if args else self.stall_seconds

    async def serve(
        self,
        request: web.Request,
        build: Callable[[web.Request, Recorded, bool], Reply | web.StreamResponse],
        *,
        stream: bool,
    ) -> web.StreamResponse:
        """Answer one generation-style request, applying the current mode.

        ``build(request, record, include_usage)`` renders the vendor answer as a
        :class:`Reply`, or returns an error response (validation failures).
        """
        record = request[_RECORD_KEY]
        record.mode = self._take_mode()
        try:
            name, args = self.parse_mode(record.mode)
        except ValueError as exc:
            return self.error_response(500, f"fake upstream: {exc}")

        if name == "echo_key_401":
            return self.error_response(
                401, f"Incorrect API key provided: {self.received_key(request)}"
            )
        if name == "reset_before_headers":
            self._reset(request)
            return web.Response(status=499)
        if name == "stall_before_headers":
            await asyncio.sleep(self._stall_time(args))
        denied = self.check_auth(request)
        if denied is not None:
            return denied
        if name == "status":
            code = int(args[0])
            headers = {"Retry-After": args[1]} if len(args) > 1 else None
            return self.error_response(code, f"fake-{self.vendor} was told to answer {code}", headers)
        if name == "html_200":
            return web.Response(status=200, body=HTML_PAGE, content_type="text/html")

        built = build(request, record, name != "no_usage")
        if not isinstance(built, Reply):
            return built
        if name == "garbage_json":
            if stream:
                return await self._send_frames(request, built, built.garbage_frames, "ok", [])
            return web.Response(
                status=200,
                body=b'{"id": "garbage", "choices": [{"message": {"content": "unterminat',
                content_type="application/json",
            )
        if built.frames is None:
            return await self._send_json(request, built, name, args)
        frames = list(built.frames)
        if name == "truncated_sse" and built.n_tail:
            frames = frames[: len(frames) - built.n_tail]
        elif name == "no_done" and built.terminator:
            frames = frames[:-1]
        return await self._send_frames(request, built, frames, name, args)

    async def _send_json(
        self, request: web.Request, reply: Reply, name: str, args: list[str]
    ) -> web.StreamResponse:
        body = json.dumps(reply.json_body).encode()
        if name not in ("stall_after_headers", "stall_mid_stream", "reset_mid_stream"):
            return web.Response(
                status=reply.status, body=body, content_type="application/json", headers=reply.headers
            )
        resp = web.StreamResponse(status=reply.status, headers=reply.headers)
        resp.content_type = "application/json"
        resp.content_length = len(body)
        await resp.prepare(request)
        half = len(body) // 2
        if name == "stall_after_headers":
            await asyncio.sleep(self._stall_time(args))
            await resp.write(body)
        else:
            await resp.write(body[:half])
            if name == "reset_mid_stream":
                self._reset(request)
                return resp
            await asyncio.sleep(self._stall_time(args))
            await resp.write(body[half:])
        await resp.write_eof()
        return resp

    async def _send_frames(
        self, request: web.Request, reply: Reply, frames: list[bytes], name: str, args: list[str]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(status=reply.status, headers=reply.headers)
        resp.content_type = reply.content_type
        resp.headers["Cache-Control"] = "no-cache"
        await resp.prepare(request)
        if name == "stall_after_headers":
            await asyncio.sleep(self._stall_time(args))
        last = max(len(frames) - 1, 0)
        stall_at = min(3, last)
        reset_at = min(5, last)
        delay = float(args[0]) if (name == "slow_stream" and args) else self.chunk_delay
        for i, frame in enumerate(frames):
            if name == "stall_mid_stream" and i == stall_at:
                await asyncio.sleep(self._stall_time(args))
            elif name == "reset_mid_stream" and i == reset_at:
                self._reset(request)
                return resp
            elif name == "error_mid_stream" and i == stall_at:
                await resp.write(reply.error_frame)
                break
            elif name == "slow_stream" and i > 0:
                await asyncio.sleep(delay)
            await resp.write(frame)
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------- helpers

    @staticmethod
    def now() -> int:
        return int(time.time())


def sse_frame(data: Any, event: str | None = None, *, eol: str = "\n", compact: bool = True) -> bytes:
    """One SSE event: optional ``event:`` line, one ``data:`` line, blank line."""
    if isinstance(data, str):
        payload = data
    elif compact:
        payload = json.dumps(data, separators=(",", ":"))
    else:
        payload = json.dumps(data)
    head = f"event: {event}{eol}" if event else ""
    return f"{head}data: {payload}{eol}{eol}".encode()
