"""Schema migrations: one numbered sequence for every backend, with per-dialect SQL where needed.

A release adds `NNNN_what.sql`, SQL that every dialect runs as written, or, where the dialects
differ (types, identity columns), one `NNNN_what.DIALECT.sql` for each of `DIALECTS`. The
backend applies a migration's statements and records it in `schema_migrations`, all in one
transaction; existing databases are upgraded in place when a store opens them, and a database
from a newer release is refused rather than guessed at. A test holds every dialect's sequence
complete and numbered from 1 without gaps.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from broker.store import SchemaTooNew

DIALECTS = ("sqlite", "postgresql")  # every backend's dialect


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file it comes from, recorded in schema_migrations
    sql: str


def available(dialect: str, directory: Traversable | None = None) -> list[Migration]:
    """Every migration of this release for `dialect`, in order: for each number, its
    `.DIALECT.sql` file if there is one, else its dialect-free `.sql` file."""
    found: dict[int, tuple[bool, Migration]] = {}
    for entry in (directory or resources.files(__package__)).iterdir():
        stem, _, ext = entry.name.partition(".")
        if not entry.name.endswith(".sql") or not stem[:4].isdigit():
            continue
        own = ext == f"{dialect}.sql"
        if ext != "sql" and not own:
            continue  # another dialect's
        version = int(stem[:4])
        if version in found and found[version][0]:
            continue
        found[version] = (own, Migration(version, entry.name, entry.read_text(encoding="utf-8")))
    return [found[v][1] for v in sorted(found)]


def pending(version: int, dialect: str) -> list[Migration]:
    """The migrations a database at schema `version` still needs, in order. StoreError for a
    database from a newer release than this one (SchemaTooNew)."""
    shipped = available(dialect)
    newest = shipped[-1].version if shipped else 0
    if version > newest:
        raise SchemaTooNew(version, newest)
    return [m for m in shipped if m.version > version]
