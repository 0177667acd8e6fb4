"""Which backend serves a database, and opening it: in the event loop that will use it (the
contract, broker/store/__init__.py)."""

from __future__ import annotations

from pathlib import Path

from broker.store import Store


async def open_store(path: Path) -> Store:
    """The store on the SQLite file `path`, created and migrated as needed (PostgreSQL joins
    with a `postgresql://` URL). StoreUnavailable when the file cannot be used, StoreError when
    its schema is from a newer release or a migration fails."""
    from broker.store.sqlite import SqliteStore  # sqlite3 and the migrations, only when opened

    return SqliteStore(path)
