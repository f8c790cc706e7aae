"""Storage: peewee tables, migrations, the writer thread, caches and repositories.

Nothing above this package touches peewee; it receives domain objects and plain dicts.
"""
