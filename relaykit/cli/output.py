"""Everything the CLI prints: rich tables for people, JSON for scripts, one-line errors."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def json_out(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    sys.stdout.flush()


def json_line(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value).decode() + "\n")
    sys.stdout.flush()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], *, title: str | None = None,
          empty: str = "Nothing to show.") -> None:
    if not rows:
        _out.print(empty)
        return
    t = Table(title=title, show_lines=False)
    for _, header in columns:
        t.add_column(header)
    for row in rows:
        t.add_row(*[_cell(row.get(key)) for key, _ in columns])
    _out.print(t)


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
    _out.print(message, markup=False)


def line(message: str) -> None:
    """Plain text without rich processing (keys, URLs that must be copied exactly)."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    _err.print(f"warning: {message}", markup=False)


def error(message: str) -> None:
    sys.stderr.write(f"relaykit: {message}\n")
    sys.stderr.flush()


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=_err, transient=True) as p:
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
