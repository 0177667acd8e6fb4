"""Which backend serves a database, and opening it: in the event loop that will use it (the
contract, broker/store/__init__.py).

A database is named by a path (the SQLite file), a `sqlite:///ABSOLUTE/PATH` URL, or a
`postgresql://` (or `postgres://`) URL as libpq reads it
(https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING-URIS).
"""

from __future__ import annotations

from pathlib import Path

from broker.store import Store

SQLITE_SCHEME = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class DatabaseUrlError(ValueError):
    """A database URL names no backend this broker has, or no file."""


def locate(database: Path | str) -> Path | str:
    """The SQLite file (a Path) or the PostgreSQL URL (a str) that `database` names.
    DatabaseUrlError for anything else."""
    if isinstance(database, Path):
        return database
    if database.startswith(POSTGRES_SCHEMES):
        import psycopg  # only for PostgreSQL

        try:
            psycopg.conninfo.conninfo_to_dict(database)
        except psycopg.ProgrammingError:
            raise DatabaseUrlError("it does not parse as a PostgreSQL URL (libpq's URI form)") from None
        return database
    if database.startswith("sqlite:"):
        path = database.removeprefix("sqlite:").removeprefix("//")
        if not database.startswith(SQLITE_SCHEME) or path.endswith("/"):
            raise DatabaseUrlError("a sqlite:/// URL names an absolute file path (sqlite:///srv/pair/broker.db)")
        return Path(path)
    raise DatabaseUrlError("it must start with postgresql:// (or sqlite:/// for a SQLite file)")


def is_postgres(database: Path | str) -> bool:
    return isinstance(database, str) and database.startswith(POSTGRES_SCHEMES)


def shown(database: Path | str) -> str:
    """`database` as it may be printed and logged: a path, or a URL without its password."""
    if is_postgres(database):
        from broker.store.postgres import describe

        return describe(str(database))
    return str(database)


async def open_store(database: Path | str) -> Store:
    """The store on `database` (see `locate`), created and migrated as needed. StoreUnavailable
    when it cannot be used (a file that cannot be written, a server that cannot be reached),
    StoreError when its schema is from a newer release or a migration fails."""
    location = locate(database)
    if isinstance(location, str):
        from broker.store.postgres import PostgresStore  # psycopg and its pool, only when used

        return await PostgresStore.open(location)
    from broker.store.sqlite import SqliteStore  # sqlite3 and the migrations, only when opened

    return SqliteStore(location)
