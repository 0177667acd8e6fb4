"""The Bus (broker.bus) across replicas: PostgreSQL's LISTEN/NOTIFY through psycopg 3.

- A fixed few PostgreSQL channels carry every bus channel (`CARRIERS`): `STREAMS`, `SNAPSHOTS`
  and `SPACES` each its own, as they are named, with the payload as it is; every other channel
  (each agent's, one per connected agent) rides `CARRIER`, its name and a line feed before the
  payload (broker.bus.MAX_PAYLOAD leaves room for both). One connection per process LISTENs to
  all of them once, when it is made (at open and after a reconnect); a reader task waits on
  `notifies()` and hands each notification to the subscriptions of the channel it names (the
  same per-subscription queue and task as MemoryBus, so the ordering and error rules are one).
  Subscribing and unsubscribing touch only this process's table: no statement, and the reader
  never stops, so 10,000 agents connecting cost no round trip here (a LISTEN per agent channel,
  each with the reader stopped and started around it, once serialized every agent's connect
  behind one connection).
- Publishing is `pg_notify` on a pooled connection, autocommitted, by one sender task: what
  is published while a statement runs goes out in the next one, many messages in one statement
  (`SEND_BATCH` at most, and never the same channel and payload twice in one: PostgreSQL would
  deliver those once). `publish` returns when its message went out (or could not: below), and
  messages go out in the order they were published; notifications are delivered in commit
  order, so one publisher's messages arrive in the order it sent them
  (https://www.postgresql.org/docs/current/sql-notify.html). The pool checks a connection that
  heard from the server while idle before lending it (a server restart leaves every pooled
  connection dead: broker.store.postgres.check_idle), and a statement that still meets a lost
  connection is tried once more on a new one.
- A message that cannot be sent even so is not an error of the caller's: what it announces was
  committed already (an unshare, a key added), so it waits in a backlog, in order, and goes out
  when PostgreSQL answers again (every later message queues behind it, keeping the order). The
  log says so once, and once when the backlog is sent; a backlog older than `BACKLOG_SECONDS`
  is dropped, saying how many messages were lost (receivers re-check on their own: the bus's
  rules allow losing messages).
- The listening connection lost (the server restarted, the backend was terminated): the reader
  says so in the log, connects again with a growing pause (0.1 s to 2 s), LISTENs again and
  says so again. NOTIFY keeps nothing for a session that was not listening: messages sent
  meanwhile are lost, as the bus's rules allow (a receiver reads the truth from the store;
  agents get the full state on their next heartbeat), and the `on_gap` callbacks run (the
  broker re-checks the streams it holds: broker.streams.recheck).
- Replicas of the release before this one LISTEN to each agent's channel by its own name: each
  message on `CARRIER` is also sent there (`LEGACY_COPIES`), so during a rolling upgrade an old
  replica still hears the commands for the agents it holds. (An old replica's commands for an
  agent held by a new one are not heard: until the last old replica is replaced, a stream
  asked of it for such an agent times out and is asked again.)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql

from broker.bus import SNAPSHOTS, SPACES, STREAMS, Listener, Subscription, Unsubscribe, check_channel, check_payload
from broker.store import StoreUnavailable
from broker.store.postgres import describe, new_pool

log = logging.getLogger("pair.broker.bus")

CARRIER = "pair_bus"  # the PostgreSQL channel of every bus channel not in OWN_CHANNELS
OWN_CHANNELS = frozenset({STREAMS, SNAPSHOTS, SPACES})  # each its own PostgreSQL channel, as named
CARRIERS = (CARRIER, *sorted(OWN_CHANNELS))  # what a replica LISTENs to, all it LISTENs to
LEGACY_COPIES = True  # also send CARRIER's messages to their channel's own name (the release before)

PUBLISH_POOL_MAX = 1  # one sender sends every statement
PUBLISH_WAIT = 2.0  # seconds a publish waits for a pooled connection before its message queues
SEND_BATCH = 500  # messages in one statement at most
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 2.0  # seconds between attempts to listen again (and to send)
BACKLOG_SECONDS = 60.0  # a message that could not be sent for this long is dropped
BACKLOG_MAX = 10_000  # messages kept while PostgreSQL cannot be reached; the oldest go first
CLOSE_FLUSH = 5.0  # seconds `close` tries to send what waits


def first_line(exc: BaseException) -> str:
    """An error's first line for a log line (libpq's messages run over several), or its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def notifications(channel: str, text: str) -> list[tuple[str, str]]:
    """The (PostgreSQL channel, payload) pairs that carry `text` published on `channel`."""
    if channel in OWN_CHANNELS:
        return [(channel, text)]
    carried = [(CARRIER, f"{channel}\n{text}")]
    return [*carried, (channel, text)] if LEGACY_COPIES else carried


def received(carrier: str, payload: str) -> tuple[str, str] | None:
    """The (bus channel, payload) a notification on `carrier` carries; None for one that is not
    this bus's (a carried payload without its channel's name)."""
    if carrier != CARRIER:
        return carrier, payload
    channel, newline, text = payload.partition("\n")
    return (channel, text) if newline and channel else None


@dataclass(eq=False)
class _Outgoing:
    """A published message until it is sent: when it was queued, its notifications, and the
    publisher waiting to hear that it went out (True) or has to wait in the backlog (False)."""

    queued: float
    pairs: list[tuple[str, str]]
    outcome: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def settle(self, sent: bool) -> None:
        if not self.outcome.done():
            self.outcome.set_result(sent)

    def refuse(self, exc: BaseException) -> None:
        if not self.outcome.done():
            self.outcome.set_exception(exc)  # raised to its publisher if it still waits
            self.outcome.exception()  # and not reported as never retrieved if it went on


class PostgresBus:
    """A Bus over one PostgreSQL database; open with `PostgresBus.open(url)`, in the event loop
    that uses it, and `close()` when done."""

    shared = True

    def __init__(self, url: str, pool: psycopg_pool.AsyncConnectionPool[Any]) -> None:
        self._url = url
        self._pool = pool
        self._channels: dict[str, set[Subscription]] = {}
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.reconnects = 0  # how often the listening connection was made again (for tests)
        self.statements = 0  # statements sent on the listening connection and for publishing (for tests)
        self._gap_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._gap_tasks: set[asyncio.Task[None]] = set()
        self._outgoing: collections.deque[_Outgoing] = collections.deque()
        self._sender: asyncio.Task[None] | None = None
        self._failing = False  # the last statement failed: what is published queues at once
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
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
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
        message = _Outgoing(time.monotonic(), notifications(check_channel(channel), check_payload(payload)))
        if len(self._outgoing) >= BACKLOG_MAX:
            self._outgoing.popleft().settle(False)
            self._dropped += 1
        self._outgoing.append(message)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all())
        if not self._failing:  # else it waits its turn in the backlog; the caller goes on
            await asyncio.shield(message.outcome)

    @property
    def waiting(self) -> int:
        """How many messages wait to be sent (for tests and metrics)."""
        return len(self._outgoing)

    async def _send(self, pairs: list[tuple[str, str]]) -> str | None:
        """`pg_notify` for each pair, in order, in one statement on a pooled connection, tried
        twice (a lost connection is discarded by the pool, so the second try gets a new one);
        None when sent, else why not."""
        why = ""
        channels, payloads = [c for c, _ in pairs], [p for _, p in pairs]
        for _ in range(2):
            try:
                async with self._pool.connection() as conn:
                    self.statements += 1
                    await conn.execute(
                        "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)", (channels, payloads)
                    )
                return None
            except psycopg_pool.PoolTimeout:
                return "no connection to the database"
            except psycopg.OperationalError as exc:
                why = first_line(exc)
        return why

    def _batch(self) -> list[_Outgoing]:
        """The oldest waiting messages that go out in one statement: at most SEND_BATCH, none
        repeating a notification of an earlier one (PostgreSQL would deliver it once)."""
        batch: list[_Outgoing] = []
        seen: set[tuple[str, str]] = set()
        for message in self._outgoing:
            if len(batch) == SEND_BATCH or seen.intersection(message.pairs):
                break
            seen.update(message.pairs)
            batch.append(message)
        return batch

    async def _send_all(self) -> None:
        """Send what waits, oldest first, in batches, pausing between failed tries; drop what
        waited longer than BACKLOG_SECONDS."""
        pause = RECONNECT_FIRST
        while self._outgoing:
            if time.monotonic() - self._outgoing[0].queued > BACKLOG_SECONDS:
                self._outgoing.popleft().settle(False)
                self._dropped += 1
                continue
            batch = self._batch()
            try:
                failure = await self._send([pair for message in batch for pair in message.pairs])
            except Exception as exc:  # refused, not unreachable (text the database cannot encode, say):
                # its publishers hear why, as from a statement of their own, and nothing waits for it
                log.error("%d bus messages could not be sent and are dropped: %r", len(batch), exc)
                for message in batch:
                    self._outgoing.remove(message)
                    message.refuse(exc)
                continue
            if failure is not None:
                if not self._failing:
                    log.warning(
                        "the bus cannot send messages to the other replicas (%s); they wait and go out when %s answers",
                        failure,
                        describe(self._url),
                    )
                    self._failing = True
                for message in batch:
                    message.settle(False)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RECONNECT_MAX)
                continue
            sent = set(map(id, batch))
            while self._outgoing and id(self._outgoing[0]) in sent:  # (unless dropped meanwhile, past BACKLOG_MAX)
                self._outgoing.popleft().settle(True)
            pause = RECONNECT_FIRST
            if self._failing and not self._outgoing:
                self._failing = False
                dropped, self._dropped = self._dropped, 0
                if dropped:
                    log.warning(
                        "the bus sends to the other replicas again; %d messages waited too long and were lost", dropped
                    )
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
            log.error("the bus closed with %d messages it could not send to the other replicas", len(self._outgoing))
        for message in self._outgoing:
            message.settle(False)

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        subscription = Subscription(check_channel(channel), listener)
        self._channels.setdefault(channel, set()).add(subscription)

        async def unsubscribe() -> None:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._channels[channel]
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

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        """A listening connection, LISTENing to every carrier (one round trip)."""
        conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True, connect_timeout=10)
        listen = sql.SQL("; ").join(sql.SQL("LISTEN {}").format(sql.Identifier(c)) for c in CARRIERS)
        self.statements += 1
        try:
            await conn.execute(listen, prepare=False)  # no parameters: the simple protocol runs them in turn
        except BaseException:  # lost again, or the bus closing meanwhile: the connection goes with it
            await conn.close()
            raise
        return conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _deliver(self, carrier: str, payload: str) -> None:
        message = received(carrier, payload)
        if message is None:
            log.debug("a notification on %s that names no channel was ignored", carrier)
            return
        channel, text = message
        for subscription in list(self._channels.get(channel, ())):
            subscription.queue.put_nowait(text.encode())

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
                log.warning("the bus listens on PostgreSQL again (%d channels)", len(CARRIERS))
                gap = asyncio.create_task(self._after_gap())  # not awaited here: the reader goes on
                self._gap_tasks.add(gap)
                gap.add_done_callback(self._gap_tasks.discard)
            try:
                async for notify in self._conn.notifies():
                    self._deliver(notify.channel, notify.payload)
            except psycopg.OperationalError as exc:
                log.warning("the bus lost its PostgreSQL connection (%s); connecting again", first_line(exc))
                await self._drop_connection()
