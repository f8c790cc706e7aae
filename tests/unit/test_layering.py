"""Dependencies point one way: cli -> server -> relay -> dialects/store -> domain/errors."""

from __future__ import annotations

import ast
from pathlib import Path

import relaykit

ROOT = Path(relaykit.__file__).parent
LAYER = {"cli": 5, "server": 4, "relay": 3, "dialects": 2, "store": 2, "domain": 1, "errors": 1, "settings": 1}
# settings is read by every layer; dialects and store never import each other
FORBIDDEN_PAIRS = {("dialects", "store"), ("store", "dialects")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "relaykit" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYER else None


def imports(path: Path) -> list[str]:
    pkg = "relaykit." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: -node.level]
                out.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.append(node.module)
    return out


def test_no_import_runs_backwards() -> None:
    wrong = []
    for path in ROOT.rglob("*.py"):
        here = layer_of("relaykit." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        if here is None:
            continue
        for target in imports(path):
            there = layer_of(target)
            if there is None or there == here:
                continue
            if LAYER[there] > LAYER[here] or (here, there) in FORBIDDEN_PAIRS:
                wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert wrong == []


def test_dialects_do_no_io() -> None:
    banned = {"aiohttp", "peewee", "socket", "time", "random", "sqlite3"}
    offenders = [f"{p.name} imports {m}" for p in (ROOT / "dialects").glob("*.py") for m in imports(p)
                 if m.split(".")[0] in banned]
    assert offenders == []
