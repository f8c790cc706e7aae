"""relaykit serve and relaykit init."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Optional

import typer
from aiohttp import web

from ..errors import CliError, ConfigError
from ..settings import load_settings, resolve_config_path
from ..store import accounts, billing
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
    if workers != 1:
        raise CliError("--workers other than 1 is not available in this build yet.")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import uvloop
        uvloop.install() if sys.version_info < (3, 12) else None
        runner = uvloop.run if sys.version_info >= (3, 12) else asyncio.run
    except ImportError:
        runner = asyncio.run
    runner(_serve(str(resolve_config_path(config)), host or s.server.host,
                  s.server.port if port is None else port))


async def _serve(config_path: str, host: str, port: int) -> None:
    from ..server.app import create_app
    from ..server.services import SERVICES
    from ..store.store import Store

    s = load_settings(config_path)
    store = Store(s.database_url)
    app = create_app(s, store)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=s.server.drain_seconds,
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise CliError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    bound = site._server.sockets[0].getsockname()  # type: ignore[union-attr]  # noqa: SLF001
    output.line(f"relaykit listening on http://{host}:{bound[1]}")
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
    await stop.wait()
    output.line("relaykit draining in-flight requests")
    await runner.cleanup()
    output.line("relaykit stopped")


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
