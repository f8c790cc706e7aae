"""The `relaykit` command: assembles the command groups and renders every error as one
sentence on stderr with a non-zero exit (never a traceback)."""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.20 vendors click under typer._click
    from typer._click import exceptions as cx
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as cx  # type: ignore[no-redef]

from ..errors import RelayError
from . import admin, cards, channels, logs, serve, tasks, tokens, users
from .output import error

app = typer.Typer(name="relaykit", help="relaykit: a self-hosted AI API relay.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command("serve")(serve.serve)
app.command("init")(serve.init)
app.command("audit")(admin.audit)
app.command("usage")(logs.usage)
app.command("version")(admin.version)
app.add_typer(admin.config_app, name="config")
app.add_typer(users.app, name="user")
app.add_typer(channels.app, name="channel")
app.add_typer(tokens.app, name="token")
app.add_typer(cards.app, name="card")
app.add_typer(logs.app, name="logs")
app.add_typer(tasks.app, name="tasks")
app.add_typer(admin.prices_app, name="prices")
app.add_typer(admin.db_app, name="db")


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="relaykit",
                          standalone_mode=False)
    except cx.NoArgsIsHelpError as exc:
        sys.stdout.write((exc.ctx.get_help() if exc.ctx else str(exc)) + "\n")
        return 0
    except cx.UsageError as exc:
        msg = exc.format_message().splitlines()[0].strip()
        error(msg + ("" if msg.endswith((".", "?", "!")) else ".") + " Run with --help for usage.")
        return 2
    except cx.ClickException as exc:
        error(exc.format_message().splitlines()[0])
        return 1
    except (typer.Abort, EOFError):
        error("Aborted.")
        return 1
    except RelayError as exc:
        error(exc.message)
        return 1
    except OverflowError:
        error("A number on the command line is too large.")
        return 1
    except KeyboardInterrupt:
        return 130
    if isinstance(rv, int):
        return rv
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
