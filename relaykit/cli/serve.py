"""relaykit serve and relaykit init."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from aiohttp import web

from ..errors import CliError, ConfigError
from ..server import scheduling
from ..settings import load_settings, resolve_config_path
from ..store import accounts, billing
from ..store.pg import is_postgres_url
from . import output
from .common import ConfigOpt, JsonOpt, open_store, settings_for

log = logging.getLogger("relaykit")


def serve(host: Annotated[Optional[str], typer.Option(help="Listen address (default from config).")] = None,
          port: Annotated[Optional[int], typer.Option(help="Port; 0 picks a free one.")] = None,
          workers: Annotated[int, typer.Option(help="Processes sharing the port.")] = 1,
          config: ConfigOpt = None) -> None:
    """Run the relay.  SIGHUP reloads the YAML; SIGTERM drains in-flight requests first."""
    s = settings_for(config)
    if s.errors:
        for p in s.errors:
            output.error(p.render(s.path))
        raise ConfigError(f"{len(s.errors)} configuration error(s); serve refuses to start.")
    for p in s.warnings:
        output.warn(p.render(s.path))
    if not 1 <= workers <= 256:
        raise CliError("--workers must be between 1 and 256.")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path, bind_host, bind_port = str(resolve_config_path(config)), host or s.server.host, (
        s.server.port if port is None else port)
    scheduling.apply(s.server.batch_scheduling)  # before any thread or worker starts: they inherit it
    if workers == 1:
        _run(_serve(path, bind_host, bind_port))
    else:
        _prefork(path, bind_host, bind_port, workers)


def _run(coro: Any) -> None:
    try:
        import uvloop
        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


def _prefork(config_path: str, host: str, port: int, workers: int) -> None:
    """N processes accept on one listening socket (the kernel spreads connections).  Money
    stays exact: every hold and settlement is a conditional statement in the shared
    database, whichever process runs it.  Holds left by a crash are recovered once, here,
    before any worker serves, so no worker releases another's live hold."""
    from ..store.store import Store

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise CliError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    sock.listen(4096)
    sock.setblocking(False)
    bound_port = sock.getsockname()[1]
    s = load_settings(config_path)
    store = Store(s.database_url)
    store.migrate()
    # on PostgreSQL other instances may be serving: only holds too old to be alive
    older = s.stale_hold_seconds if is_postgres_url(s.database_url) else None
    released = store.tx(lambda t: billing.release_stale_holds(t, older_than=older))
    if released:
        log.warning("released %d holds left open by an earlier run", released)
    store.db.close()
    store.close()  # PostgreSQL: no pooled connection may cross the fork into the workers
    children: list[int] = []
    ready_r, ready_w = os.pipe()
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker
            os.close(ready_r)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            code = 0
            try:
                _run(_serve(config_path, host, port, sock=sock, recover=False, ready_fd=ready_w))
            except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    sock.close()
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        started = len(ready.read(workers))  # one byte per worker once it accepts
    if started == workers:
        output.line(f"relaykit listening on http://{host}:{bound_port} ({workers} workers)")

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    failed = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        failed += os.waitstatus_to_exitcode(status) != 0
    output.line("relaykit stopped")
    if failed:
        raise CliError(f"{failed} worker(s) exited with an error; see the log above.")


async def _serve(config_path: str, host: str, port: int, *, sock: socket.socket | None = None,
                 recover: bool = True, ready_fd: int | None = None) -> None:
    from ..server.app import create_app
    from ..server.fastlane import LaneSite
    from ..server.services import SERVICES
    from ..store.store import Store

    s = load_settings(config_path)
    store = Store(s.database_url)
    app = create_app(s, store, recover_holds=recover)
    live = _track_requests(app)
    # the drain is ours (_drain); aiohttp's own would wait drain_seconds twice before cutting
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    # signals are handled before anyone is told the relay listens: a SIGTERM right after
    # the "listening" line drains instead of killing the process
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        try:
            fresh = load_settings(config_path)
        except ConfigError as exc:
            output.error(f"reload refused: {exc.message}")
            return
        if fresh.errors:
            output.error(f"reload refused: {fresh.errors[0].render(fresh.path)}")
            return
        app[SERVICES].reload(fresh)
        output.line("relaykit reloaded its configuration")

    loop.add_signal_handler(signal.SIGHUP, reload)
    # connections start in the fast lane (server/fastlane.py), which hands aiohttp the rest
    site = LaneSite(runner, host=host, port=port, sock=sock, backlog=4096, live=live, shutdown_timeout=1.0)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CliError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    if sock is None:
        bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]  # noqa: SLF001
        output.line(f"relaykit listening on http://{host}:{bound[1]}")
    _settle_heap()
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    await stop.wait()
    output.line("relaykit draining in-flight requests")
    cut = await _drain(runner, live, s.server.drain_seconds, app[SERVICES])
    if cut:
        output.line(f"relaykit cut {cut} request(s) still running after {s.server.drain_seconds:g} s")
    await runner.cleanup()  # closes upstream sessions, then the writer once it has committed everything
    output.line("relaykit stopped")


def _settle_heap() -> None:
    """Tune the garbage collector for a long-running server (measured with scripts/bench).

    Everything built at start (settings, routes, modules) is moved out of the collector's
    sight, so the full collections that requests trigger no longer walk it; and young
    collections run per 20 000 allocations instead of 700, which cut the p99 at
    concurrency 64 without raising memory noticeably (requests free what they make).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    _trim_malloc()


def _trim_malloc() -> None:
    """Give the C heap's free pages back to the system once start-up garbage is gone
    (glibc keeps them otherwise: a few MB of idle RSS)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to trim
        pass


def _track_requests(app: web.Application) -> set[asyncio.Task[Any]]:
    """The tasks of the requests being handled (a stream's task lives until its last byte)."""
    live: set[asyncio.Task[Any]] = set()

    @web.middleware
    async def track(request: web.Request, handler: Any) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            live.add(task)
        try:
            return await handler(request)
        finally:
            live.discard(task)  # type: ignore[arg-type]

    app.middlewares.insert(0, track)
    return live


async def _drain(runner: web.AppRunner, live: set[asyncio.Task[Any]], seconds: float, svc: Any) -> int:
    """SIGTERM (RELIABILITY §5.4 rule 8): stop accepting, let in-flight requests finish for
    up to ``seconds``, then cancel the rest and wait while they settle (each bills what it
    delivered).  Returns how many were cut."""
    from ..server.fastlane import LaneSite

    for site in list(runner.sites):
        if isinstance(site, LaneSite):
            site.stop_accepting()  # and its keep-alive ends; runner.cleanup() stops it for good
        else:
            await site.stop()  # new connections are refused from here on
    if runner.server is not None:
        runner.server.pre_shutdown()  # keep-alive connections close after their current request
    pending = [t for t in live if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=seconds)
    cut = [t for t in live if not t.done()]
    if cut:
        svc.pipeline.stopping = True  # their log rows say why they ended
        for t in cut:
            t.cancel()
        await asyncio.wait(cut, timeout=5.0)
    return len(cut)


def init(force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config file.")] = False,
         admin: Annotated[str, typer.Option("--admin", help="Name of the first admin user.")] = "admin",
         config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Write a starter relaykit.yaml, create the database and the first admin user."""
    path = resolve_config_path(config) if config else Path("relaykit.yaml")
    accounts.check_user_name(admin)
    if path.exists() and not force:
        raise CliError(f"{path} already exists; pass --force to overwrite it.")
    text = resources.files("relaykit").joinpath("example.yaml").read_text(encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    s = load_settings(path)
    store = open_store(s)
    password = secrets.token_urlsafe(18)

    def first_admin(t: object) -> tuple[bool, str | None, int | None]:
        if store.t.User.get_or_none(store.t.User.name == admin) is not None:
            return False, None, None
        user = accounts.create_user(store.t, admin, role="admin", password_hash=accounts.hash_password(password))
        row, key = accounts.create_token(store.t, user_id=user.id, name="admin", quota=None, expires_at=None,
                                         group=None, models=[], ips=[], rpm=None, tpm=None)
        return True, key, row.id

    created, key, token_id = store.tx(first_admin)
    if json:
        output.json_out({"config": str(path), "database": s.database_url, "admin": admin if created else None,
                         "password": password if created else None, "token": key, "token_id": token_id})
        return
    output.say(f"Wrote {path} and created the database at {s.database_url}.")
    if created:
        output.say(f"Admin user '{admin}' created. Password and API token are shown only this time:")
        output.line(f"password: {password}")
        output.line(f"token:    {key}")
    else:
        output.say(f"Admin user '{admin}' already exists; nothing changed in the database.")
    _ = billing  # the admin starts with a zero balance; 'relaykit user topup' adds credit
