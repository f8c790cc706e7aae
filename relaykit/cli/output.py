"""Everything the CLI prints: rich tables for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from rich.console import Console

# rich loads on first use: ``relaykit serve`` prints only plain lines, and the ~50 modules
# of rich would stay in its memory for nothing (scripts/bench reports idle RSS)
_consoles: dict[bool, Console] = {}


def _console(stderr: bool = False) -> Console:
    console = _consoles.get(stderr)
    if console is None:
        from rich.console import Console
        console = _consoles[stderr] = Console(stderr=stderr, highlight=False, soft_wrap=True)
    return console


def json_out(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    sys.stdout.flush()


def json_line(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], *, title: str | None = None,
          empty: str = "Nothing to show.") -> None:
    from rich.table import Table
    if not rows:
        _console().print(empty)
        return
    t = Table(title=title, show_lines=False)
    for _, header in columns:
        t.add_column(header)
    for row in rows:
        t.add_row(*[_cell(row.get(key)) for key, _ in columns])
    _console().print(t)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "-"
    return str(v)


def say(message: str) -> None:
    _console().print(message, markup=False)


def line(message: str) -> None:
    """Plain text without rich processing (keys, URLs that must be copied exactly)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    _console(stderr=True).print(f"warning: {message}", markup=False)


def error(message: str) -> None:
    sys.stderr.write(f"relaykit: {message}\n")
    sys.stderr.flush()


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=_console(stderr=True), transient=True) as p:
        task = p.add_task(description, total=total)

        class Advance:
            def __call__(self, n: int = 1) -> None:
                p.advance(task, n)

        yield Advance()


def when(ts: float | None) -> str:
    """Unix seconds as local date and time for tables (JSON keeps the number)."""
    if ts is None:
        return "-"
    from datetime import datetime
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def rows_of(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [dict(i) for i in items]
