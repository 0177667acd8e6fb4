"""Schema migrations: numbered SQL files applied in order, each in its own transaction.

A release adds `NNNN_what.sql`; existing databases are upgraded in place on start. A database
from a newer release is refused rather than guessed at.
"""

from __future__ import annotations

import sqlite3
import time
from importlib import resources

from broker.store import StoreError


def available() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with this release, in order."""
    out = []
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            out.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


def current_version(db: sqlite3.Connection) -> int:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite3.Connection) -> list[str]:
    """Bring the schema up to date; return the names of the migrations applied."""
    migrations = available()
    version = current_version(db)
    newest = migrations[-1][0] if migrations else 0
    if version > newest:
        raise StoreError(f"The database is at schema version {version}, newer than this broker knows ({newest}).")
    applied = []
    for number, name, sql in migrations:
        if number <= version:
            continue
        # executescript commits first, so the migration and its record go in one explicit transaction.
        try:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\n"
                "INSERT INTO schema_migrations (version, name, applied_at)"
                f" VALUES ({number}, '{name}', {int(time.time())});\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"Migration {name} failed: {exc}") from exc
        applied.append(name)
    return applied
