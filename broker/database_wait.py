"""A replica started while its PostgreSQL server is away waits for it (issue 13): `serve` tries
again with a capped backoff, says so in one line, and listens only once the database is open, so
a load balancer sends it nothing meanwhile.

What decides is libpq's own ping (PQping, broker.store.postgres.server_answers): a server that
does not answer (down, unreachable, no such host) or refuses connections for now (starting up,
shutting down, recovering) is waited for. A server that answers and still refuses the broker (a
wrong password, no such database, a standby) is a mistake to fix, not to wait out: its error
stands at once. The admin verbs never wait (a person runs them and reads the sentence); only
`serve` comes here.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from broker.context import DatabaseUnavailable
from broker.store.backends import is_postgres

T = TypeVar("T")

FIRST_RETRY = 1.0  # seconds before the first retry, doubled after each one up to MAX_RETRY
MAX_RETRY = 10.0
REPEAT_SECONDS = 60.0  # while the same reason lasts, it is said again this often


def retry_delays(first: float = FIRST_RETRY, cap: float = MAX_RETRY) -> Iterator[float]:
    """The seconds to wait before each next try: `first`, doubled each time, never above `cap`."""
    delay = min(first, cap)
    while True:
        yield delay
        delay = min(delay * 2, cap)


async def open_waiting(
    database: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    answers: Callable[[str], Awaitable[bool]] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    say: Callable[[str], None] | None = None,
) -> T:
    """What `attempt()` returns; it opens the database `database` (a postgresql:// URL, or a
    SQLite path) and is tried again while it raises DatabaseUnavailable and the PostgreSQL
    server does not answer (`answers`, default libpq's ping). Anything else, and any failure on
    a server that answers (after one more try: it may have come up just then) or on SQLite, is
    raised at once. `say` gets the lines for the operator (default: standard error, as `serve`'s
    other start-up lines: the log is set up once it serves): `waiting for PostgreSQL at
    HOST:PORT: REASON; retrying in N s` when waiting starts, again when the reason changes or
    REPEAT_SECONDS passed, and one line when the server answers."""
    say = say or _stderr
    delays = retry_delays()
    told: tuple[str, float] | None = None  # the reason last said, and when
    answered = False  # the server answered after the last failure: the next try decides
    while True:
        try:
            result = await attempt()
        except DatabaseUnavailable as exc:
            if not is_postgres(database) or answered:
                raise
            from broker.store.postgres import server_address, server_answers  # psycopg: PostgreSQL only

            if await (answers or server_answers)(database):
                answered = True
                continue
            delay = next(delays)
            now = time.monotonic()
            why = exc.unavailable.why
            if told is None or told[0] != why or now - told[1] >= REPEAT_SECONDS:
                say(f"waiting for PostgreSQL at {server_address(database)}: {why}; retrying in {delay:g} s")
                told = (why, now)
            await sleep(delay)
            continue
        if told is not None:
            from broker.store.postgres import server_address

            say(f"PostgreSQL at {server_address(database)} answers; starting.")
        return result


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
