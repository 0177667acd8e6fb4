"""What a PostgreSQL error means to the broker, decided by its SQLSTATE alone (never its message
text, which follows the server's language and version): a uniqueness rule hit (Conflict), the
environment failing (StoreUnavailable: the server unreachable, out of room, read-only, refusing
the broker's role), or anything else (StoreError: a bug, or a transient clash to retry).

SQLSTATE codes: https://www.postgresql.org/docs/current/errcodes-appendix.html (five characters;
the first two are the class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

UNIQUE_VIOLATION = "23505"

# class or full code -> (why, what the operator can do); the full code is looked up first.
_UNAVAILABLE: dict[str, tuple[str, str]] = {
    "08": (  # connection_exception
        "the database server cannot be reached",
        "Check that PostgreSQL is running and that the broker's --database URL names it.",
    ),
    "53": (
        "the database server ran out of resources",
        "Check the PostgreSQL server's disk, memory and max_connections.",
    ),
    "53100": ("the database server's disk is full", "Free space on the disk that holds PostgreSQL's data directory."),
    "53300": (
        "the database server has no connection free",
        "Raise PostgreSQL's max_connections, or run fewer broker replicas.",
    ),
    "57P01": ("the database server is shutting down", "Wait for PostgreSQL to be back; the broker reconnects."),
    "57P02": ("the database server crashed", "Wait for PostgreSQL to be back; the broker reconnects."),
    "57P03": ("the database server is starting up", "Wait for PostgreSQL to be back; the broker reconnects."),
    "57014": (  # query_canceled: statement_timeout
        "the database is too busy (a statement timed out)",
        "Check the PostgreSQL server's load and locks (pg_stat_activity).",
    ),
    "55P03": (  # lock_not_available: lock_timeout
        "another session holds the database locked",
        "Check PostgreSQL's locks (pg_locks) for a long transaction.",
    ),
    "25006": (  # read_only_sql_transaction
        "the database is read-only (a standby, or default_transaction_read_only)",
        "Point --database at the primary server.",
    ),
    "28": (  # invalid_authorization_specification
        "the database server refused the broker's credentials",
        "Check the user and password in the --database URL (and pg_hba.conf).",
    ),
    "3D000": ("the database does not exist", "Create it (createdb), or fix the name in the --database URL."),
    "42501": (  # insufficient_privilege
        "the broker's database role lacks a privilege",
        "Grant the broker's role ownership of its database (docs/operations.md).",
    ),
}


_CONNECT = (
    "the broker cannot connect to the database server",
    "Check that PostgreSQL is running, and the host, port, user, password and database name in the --database URL.",
)


@dataclass(frozen=True)
class Verdict:
    kind: Literal["conflict", "unavailable", "error"]
    why: str = ""
    hint: str = ""


def verdict(sqlstate: str | None, *, connection_lost: bool = False) -> Verdict:
    """What an error with this SQLSTATE means. `connection_lost`: the driver raised it without a
    SQLSTATE because the connection failed (psycopg's OperationalError), which is unavailable too."""
    if sqlstate == UNIQUE_VIOLATION:
        return Verdict("conflict")
    if sqlstate is None:
        if connection_lost:  # libpq says why in words only (no result, so no SQLSTATE) at connect
            return Verdict("unavailable", *_CONNECT)
        return Verdict("error")
    found = _UNAVAILABLE.get(sqlstate) or _UNAVAILABLE.get(sqlstate[:2])
    if found is None:
        return Verdict("error")
    return Verdict("unavailable", *found)
