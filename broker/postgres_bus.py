"""The Bus (broker.bus) across replicas: PostgreSQL's LISTEN/NOTIFY through psycopg 3.

- One connection per process listens (autocommit, as LISTEN needs): it LISTENs to a channel
  while the channel has a subscriber and UNLISTENs after the last one leaves; a reader task
  waits on `notifies()` and hands each notification to its channel's subscriptions (the same
  per-subscription queue and task as MemoryBus, so the ordering and error rules are one).
- Publishing is `SELECT pg_notify(channel, payload)` on a pooled connection, autocommitted, so
  a message is delivered when `publish` returns from the database; notifications go out in
  commit order, so one publisher's messages arrive in the order it sent them
  (https://www.postgresql.org/docs/current/sql-notify.html). The pool checks a connection that
  heard from the server while idle before lending it (a server restart leaves every pooled
  connection dead: broker.store.postgres.check_idle), and a publish that still meets a lost
  connection tries once more on a new one.
- A message that cannot be sent even so is not an error of the caller's: what it announces was
  committed already (an unshare, a key added), so it waits in a backlog, in order, and goes out
  when PostgreSQL answers again (every later message queues behind it, keeping the order). The
  log says so once, and once when the backlog is sent; a backlog older than `BACKLOG_SECONDS`
  is dropped, saying how many messages were lost (receivers re-check on their own: the bus's
  rules allow losing messages).
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
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from broker.bus import Listener, Subscription, Unsubscribe, check_payload
from broker.store import StoreUnavailable
from broker.store.postgres import describe, new_pool

log = logging.getLogger("pair.broker.bus")

PUBLISH_POOL_MAX = 4  # connections for pg_notify; each publish holds one for one statement
PUBLISH_WAIT = 2.0  # seconds a publish waits for a pooled connection before its message queues
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 2.0  # seconds between attempts to listen again (and to send)
BACKLOG_SECONDS = 60.0  # a message that could not be sent for this long is dropped
BACKLOG_MAX = 10_000  # messages kept while PostgreSQL cannot be reached; the oldest go first
CLOSE_FLUSH = 5.0  # seconds `close` tries to send what waits


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
        self._backlog: collections.deque[tuple[float, str, str]] = collections.deque()  # (queued at, channel, text)
        self._sender: asyncio.Task[None] | None = None
        self._dropped = 0

    @classmethod
    async def open(cls, url: str) -> PostgresBus:
        """Connect the publishing pool and the listening connection. StoreUnavailable when the
        server cannot be reached."""
        pool = new_pool(url, name="pair-broker-bus", max_size=PUBLISH_POOL_MAX, timeout=PUBLISH_WAIT)
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
        await self._stop_sender()
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
        """As Bus.publish. Never fails for want of the database: a message that cannot be sent
        (after one more try on a new connection) waits in the backlog and goes out, in order,
        when PostgreSQL answers (see the module's docstring)."""
        text = check_payload(payload)
        if not self._backlog:
            failure = await self._send(channel, text)
            if failure is None:
                return
            log.warning(
                "the bus cannot send messages to the other replicas (%s); they wait and go out when %s answers",
                failure,
                describe(self._url),
            )
        self._queue(channel, text)

    @property
    def waiting(self) -> int:
        """How many messages wait in the backlog (for tests and metrics)."""
        return len(self._backlog)

    async def _send(self, channel: str, text: str) -> str | None:
        """`pg_notify` on a pooled connection, tried twice (a lost connection is discarded by
        the pool, so the second try gets a new one); None when sent, else why not."""
        why = ""
        for _ in range(2):
            try:
                async with self._pool.connection() as conn:
                    await conn.execute("SELECT pg_notify(%s, %s)", (channel, text))
                return None
            except psycopg_pool.PoolTimeout:
                return "no connection to the database"
            except psycopg.OperationalError as exc:
                why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return why

    def _queue(self, channel: str, text: str) -> None:
        if len(self._backlog) >= BACKLOG_MAX:
            self._backlog.popleft()
            self._dropped += 1
        self._backlog.append((time.monotonic(), channel, text))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_backlog())

    async def _send_backlog(self) -> None:
        """Send what waits, oldest first, pausing between failed tries; drop what waited longer
        than BACKLOG_SECONDS."""
        pause = RECONNECT_FIRST
        while self._backlog:
            queued, channel, text = self._backlog[0]
            if time.monotonic() - queued > BACKLOG_SECONDS:
                self._backlog.popleft()
                self._dropped += 1
                continue
            if await self._send(channel, text) is not None:
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_MAX)
                continue
            self._backlog.popleft()
            pause = RECONNECT_FIRST
        dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("the bus sends to the other replicas again; %d messages waited too long and were lost", dropped)
        else:
            log.warning("the bus sends to the other replicas again; every waiting message went out")

    async def _stop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(sender), CLOSE_FLUSH)
        except TimeoutError:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            log.error("the bus closed with %d messages it could not send to the other replicas", len(self._backlog))

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
