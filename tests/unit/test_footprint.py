"""What `relaykit serve` loads: heavy packages that the server never uses stay out of its
memory (scripts/bench reports the idle RSS these choices bought: 74 MB -> 55 MB)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import relaykit.cli.app, relaykit.server.app
from relaykit.cli.app import main
from relaykit.store.store import Store
store = Store("sqlite:///:memory:")
store.migrate()
main(["version"])  # typer builds its command tree: parameter types must not pull pydantic
print(sorted({m.split('.')[0] for m in sys.modules} & {"psycopg", "psycopg2", "pydantic", "rich"}))
"""


def test_serving_sqlite_loads_neither_psycopg_nor_pydantic_nor_rich() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_postgresql_still_gets_its_driver_after_peewee_was_imported_without_it() -> None:
    probe = """
import relaykit, peewee
from relaykit.store import pg
assert getattr(peewee, "psycopg", None) is None  # hidden at import (relaykit/__init__.py)
pg.open_postgres("postgresql://root@127.0.0.1:5432/test")  # opens nothing yet: builds the pool
import psycopg
assert peewee.psycopg is psycopg and peewee.TransactionStatus is not None
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_serve_moves_its_start_up_heap_out_of_the_collectors_sight() -> None:
    import gc

    from relaykit.cli.serve import _settle_heap
    threshold = gc.get_threshold()
    try:
        _settle_heap()
        # what start-up built is frozen (full collections no longer walk it), and young
        # collections run per 20 000 allocations (scripts/bench: p99/p50 at c=64 3.8 -> ~1.8)
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold()[0] == 20_000
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
