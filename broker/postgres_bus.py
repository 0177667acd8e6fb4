"""The Bus (broker.bus) across replicas: PostgreSQL's LISTEN/NOTIFY through psycopg 3.

- One connection per process listens (autocommit, as LISTEN needs): it LISTENs to a channel
  while the channel has a subscriber and UNLISTENs after the last one leaves; a reader task
  waits on `notifies()` and hands each notification to its channel's subscriptions (the same
  per-subscription queue and task as MemoryBus, so the ordering and error rules are one).
- Publishing is `SELECT pg_notify(channel, payload)` on a pooled connection, autocommitted, so
  a message is delivered when `publish` returns from the database; notifications go out in
  commit order, so one publisher's messages arrive in the order it sent them
  (https://www.postgresql.org/docs/current/sql-notify.html).
- The listening connection lost (the server restarted, the backend was terminated): the reader
  says so in the log, connects again with a growing pause (0.1 s to 2 s), LISTENs to every
  channel that has subscribers and says so again. NOTIFY keeps nothing for a session that was
  not listening: messages sent meanwhile are lost, as the bus's rules allow (a receiver reads
  the truth from the store; agents get the full state on their next heartbeat), and the
  `on_gap` callbacks run (the broker re-checks the streams it holds: broker.streams.recheck).

`psycopg`'s `notifies()` holds the connection while it waits, so a LISTEN or UNLISTEN stops the
reader (cancelling a wait on an idle connection consumes nothing: notifications read meanwhile
wait in psycopg's backlog, which the next `notifies()` yields first) and starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from broker.bus import Listener, Subscription, Unsubscribe, check_payload
from broker.store import StoreUnavailable
from broker.store.postgres import describe

log = logging.getLogger("pair.broker.bus")

PUBLISH_POOL_MAX = 4  # connections for pg_notify; each publish holds one for one statement
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 2.0  # seconds between attempts to listen again


class PostgresBus:
    """A Bus over one PostgreSQL database; open with `PostgresBus.open(url)`, in the event loop
    that uses it, and `close()` when done."""

    shared = True

    def __init__(self, url: str, pool: psycopg_pool.AsyncConnectionPool[Any]) -> None:
        self._url = url
        self._pool = pool
        self._channels: dict[str, set[Subscription]] = {}
        self._listening: set[str] = set()  # channels LISTENed to on the current connection
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changing = asyncio.Lock()  # one LISTEN/UNLISTEN at a time, with the reader stopped
        self.reconnects = 0  # how often the listening connection was made again (for tests)
        self._gap_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._gap_tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, url: str) -> PostgresBus:
        """Connect the publishing pool and the listening connection. StoreUnavailable when the
        server cannot be reached."""
        pool: psycopg_pool.AsyncConnectionPool[Any] = psycopg_pool.AsyncConnectionPool(
            url, min_size=1, max_size=PUBLISH_POOL_MAX, kwargs={"autocommit": True}, open=False
        )
        try:
            await pool.open(wait=True, timeout=10.0)
        except psycopg_pool.PoolTimeout as exc:
            await pool.close()
            raise StoreUnavailable(describe(url), "its server cannot be reached", "Is PostgreSQL running?") from exc
        bus = cls(url, pool)
        try:
            bus._conn = await bus._connect()
        except psycopg.OperationalError as exc:
            await pool.close()
            raise StoreUnavailable(describe(url), f"cannot listen ({exc})", "Is PostgreSQL running?") from exc
        bus._reader = asyncio.create_task(bus._read())
        return bus

    async def close(self) -> None:
        await self._stop_reader()
        for subscriptions in list(self._channels.values()):
            for subscription in list(subscriptions):
                await subscription.stop()
        self._channels.clear()
        if self._conn is not None:
            await self._conn.close()
        await self._pool.close()

    # -- the Bus protocol ---------------------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        """As Bus.publish; StoreUnavailable when the database cannot be reached."""
        text = check_payload(payload)
        try:
            async with self._pool.connection() as conn:
                await conn.execute("SELECT pg_notify(%s, %s)", (channel, text))
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(
                describe(self._url), "a message could not be sent to the other replicas", "Is PostgreSQL running?"
            ) from exc

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        subscription = Subscription(channel, listener)
        async with self._changing:
            self._channels.setdefault(channel, set()).add(subscription)
            if channel not in self._listening:
                await self._while_stopped(sql.SQL("LISTEN {}").format(sql.Identifier(channel)), channel, True)

        async def unsubscribe() -> None:
            async with self._changing:
                subscribers = self._channels.get(channel)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._channels[channel]
                        if channel in self._listening:
                            statement = sql.SQL("UNLISTEN {}").format(sql.Identifier(channel))
                            await self._while_stopped(statement, channel, False)
            await subscription.stop()

        return unsubscribe

    def subscribers(self, channel: str) -> int:
        """How many subscriptions `channel` has in this process."""
        return len(self._channels.get(channel, ()))

    def on_gap(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._gap_callbacks.append(callback)

    async def _after_gap(self) -> None:
        for callback in list(self._gap_callbacks):
            try:
                await callback()
            except Exception:  # one failed check must not keep the bus from listening
                log.exception("re-checking after the bus listened again failed")

    # -- the listening connection ---------------------------------------------------------------

    async def _while_stopped(self, statement: sql.Composed, channel: str, listen: bool) -> None:
        """Run LISTEN or UNLISTEN with the reader stopped, then start it again. A connection
        that fails meanwhile is the reader's to make again (with every channel)."""
        await self._stop_reader()
        try:
            if self._conn is not None and not self._conn.closed:
                await self._conn.execute(statement)
                if listen:
                    self._listening.add(channel)
                else:
                    self._listening.discard(channel)
        except psycopg.OperationalError:
            await self._drop_connection()
        finally:
            self._reader = asyncio.create_task(self._read())

    async def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        """A listening connection, LISTENing to every channel that has subscribers."""
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, connect_timeout=10)
        self._listening = set()
        for channel in list(self._channels):
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._listening.add(channel)
        return conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._listening = set()
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _read(self) -> None:
        """Hand every notification to its channel's subscriptions; when the connection is lost,
        make it again (saying so) and go on."""
        pause = RECONNECT_FIRST
        while True:
            if self._conn is None:
                try:
                    self._conn = await self._connect()
                except psycopg.OperationalError as exc:
                    log.debug("listening on PostgreSQL again failed: %s", exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RECONNECT_MAX)
                    continue
                self.reconnects += 1
                pause = RECONNECT_FIRST
                log.warning("the bus listens on PostgreSQL again (%d channels)", len(self._listening))
                gap = asyncio.create_task(self._after_gap())  # not awaited here: the reader goes on
                self._gap_tasks.add(gap)
                gap.add_done_callback(self._gap_tasks.discard)
            try:
                async for notify in self._conn.notifies():
                    payload = notify.payload.encode()
                    for subscription in list(self._channels.get(notify.channel, ())):
                        subscription.queue.put_nowait(payload)
            except psycopg.OperationalError as exc:
                log.warning("the bus lost its PostgreSQL connection (%s); connecting again", str(exc).strip())
                await self._drop_connection()
