"""relaykit: a self-hosted AI API relay (one endpoint, every provider, metered and billed)."""

import sys as _sys

__version__ = "0.1.0"

# peewee imports psycopg when it is installed (the [postgres] extra): ~70 modules, 6 MB of
# memory and 60 ms on every CLI start, also for the SQLite default that never uses it.
# peewee is first imported here with psycopg hidden; store/pg.py hands psycopg to peewee
# when a database URL asks for PostgreSQL.
if "peewee" not in _sys.modules:
    _hidden = {name: _sys.modules.get(name, False) for name in ("psycopg", "psycopg2")}
    for _name in _hidden:
        _sys.modules[_name] = None  # type: ignore[assignment]  # makes `import psycopg` fail fast
    try:
        import peewee as _peewee  # noqa: F401
    finally:
        for _name, _was in _hidden.items():
            if _was is False:
                del _sys.modules[_name]
            else:
                _sys.modules[_name] = _was  # type: ignore[assignment]
