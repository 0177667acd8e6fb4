"""The bus for processes that do not serve: the admin verbs (`pair-broker users remove`, `groups
members remove`, …) run beside the serving broker, in a process of their own, and what they
announce (streams to end, a Space's new keys, an agent's credential revoked: broker.events)
must reach the serving broker's bus, where the streams and agents are.

`OutboxBus` is the admin process's bus: each message is published in the process as well
(MemoryBus) and kept in the database's outbox (`Store.outbox_put`). `relay` runs in every
serving broker: every `POLL_SECONDS` it publishes on its own bus the messages put since it last
looked, in order, and forgets those older than `KEEP_SECONDS`. So an admin verb's change ends the
streams it should within a second, through the same `broker.events` path as the API's. Messages
put while no broker served are skipped at start-up: the streams and agent channels they were
about did not outlive that broker.

Each reader remembers the last id it published (an id is never reused: the store's contract).
On PostgreSQL none of this runs: the admin verbs and the replicas share a bus that reaches every
process (broker.postgres_bus), so an admin verb publishes there as a replica would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from broker.bus import MAX_PAYLOAD, Listener, MemoryBus, PayloadTooLarge, Unsubscribe
from broker.context import Context
from broker.store import Queries, StoreUnavailable

POLL_SECONDS = 0.5
KEEP_SECONDS = 60  # a relay that missed more than this (stalled, or the store away) skips it
BATCH = 200  # messages read per look

log = logging.getLogger("pair.broker.outbox")


class OutboxBus:
    """A Bus (broker.bus) that also hands every message to the serving brokers, through the
    database: for processes that serve nothing themselves."""

    shared = True  # through the serving brokers' relay

    def __init__(self, store: Queries, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._local = MemoryBus()

    async def publish(self, channel: str, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise PayloadTooLarge(f"a bus payload is at most {MAX_PAYLOAD} bytes, not {len(payload)}")
        await self._local.publish(channel, payload)
        await self._store.outbox_put(channel, payload, int(self._clock()))

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        return await self._local.subscribe(channel, listener)

    def on_gap(self, callback: Callable[[], Awaitable[None]]) -> None:
        pass  # the outbox keeps every message: nothing is lost

    async def close(self) -> None:
        await self._local.close()


async def relay_once(ctx: Context, after: int) -> int:
    """Publish on `ctx.bus` the outbox's messages with ids above `after`, oldest first; the last
    id published (`after` when there were none)."""
    while True:
        found = await ctx.store.outbox_after(after, BATCH)
        for message_id, channel, payload in found:
            await ctx.bus.publish(channel, payload)
            after = message_id
        if len(found) < BATCH:
            return after


async def relay(ctx: Context, after: int) -> None:
    """Publish what is put in the outbox after the message `after` (`Store.outbox_newest()` at
    start-up), for as long as the broker serves (the app's lifespan cancels it)."""
    looks = 0
    while True:
        try:
            if looks % int(KEEP_SECONDS / POLL_SECONDS) == 0:  # at start, then every KEEP_SECONDS
                await ctx.store.outbox_trim(ctx.now() - KEEP_SECONDS)
            after = await relay_once(ctx, after)
        except StoreUnavailable:
            pass  # the store told the operator (rate-limited); the next look tries again
        except Exception:  # one failed look must not end the relay
            log.exception("relaying the outbox failed")
        looks += 1
        await asyncio.sleep(POLL_SECONDS)
