"""Publish/subscribe between the parts of the broker that must hear each other's news: pushes to
an agent, "end these streams", a Space's authorized keys changed (Coder's `pubsub`).

Callers publish to a channel and subscribe to channels; they never know which implementation
runs. `MemoryBus` serves one broker process; a PostgreSQL one (LISTEN/NOTIFY) will serve several
replicas without touching callers, so the rules are NOTIFY's:

- a payload is at most `MAX_PAYLOAD` bytes (NOTIFY refuses 8000 and more): ids and small
  sentences, never a snapshot — the receiver reads the rest from the store;
- delivery is asynchronous: when `publish` returns, listeners may not have run yet;
- each subscription sees its channel's messages in the order they were published, and a
  listener never runs concurrently with itself; nothing is kept for subscribers that come later.

Channels (a PostgreSQL channel is an identifier of at most 63 bytes):

- `agent_channel(space_id)`: commands for the replica holding that Space's agent control
  channel (broker.events.AgentCommand); it subscribes while it holds the channel.
- `STREAMS`: every replica ends its own part of the streams named (broker.events.StreamEvent).
- `SNAPSHOTS`: a Space's authorized keys changed (its id): every replica drops its cached copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

Listener = Callable[[bytes], Awaitable[None]]
Unsubscribe = Callable[[], Awaitable[None]]

MAX_PAYLOAD = 7999  # bytes; PostgreSQL's NOTIFY takes payloads shorter than 8000 bytes

STREAMS = "pair_streams"
SNAPSHOTS = "pair_snapshots"

log = logging.getLogger("pair.broker.bus")


def agent_channel(space_id: str) -> str:
    """The channel of commands for the agent of `space_id` (sp_ and 12 characters: 21 bytes)."""
    return f"pair_agent_{space_id}"


class PayloadTooLarge(ValueError):
    pass


class Bus(Protocol):
    async def publish(self, channel: str, payload: bytes) -> None:
        """Send `payload` (at most MAX_PAYLOAD bytes, else PayloadTooLarge) to every current
        subscriber of `channel`, in any process sharing this bus."""
        ...

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        """Call `listener(payload)` for each message published to `channel` from now on, until
        the returned function is awaited. A listener's exception is logged and the next message
        still delivered."""
        ...


class MemoryBus:
    """The in-process Bus: each subscription has a queue and a task that calls its listener, so
    publishing never waits for listeners (as with NOTIFY) and every listener's error is
    collected in one place."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[_Subscription]] = {}

    async def publish(self, channel: str, payload: bytes) -> None:
        if len(payload) > MAX_PAYLOAD:
            raise PayloadTooLarge(f"a bus payload is at most {MAX_PAYLOAD} bytes, not {len(payload)}")
        for subscription in list(self._subscriptions.get(channel, ())):
            subscription.queue.put_nowait(payload)

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        subscription = _Subscription(channel, listener)
        self._subscriptions.setdefault(channel, set()).add(subscription)

        async def unsubscribe() -> None:
            subscribers = self._subscriptions.get(channel)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscriptions[channel]
            await subscription.stop()

        return unsubscribe

    def subscribers(self, channel: str) -> int:
        """How many subscriptions `channel` has (for tests and metrics)."""
        return len(self._subscriptions.get(channel, ()))


class _Subscription:
    def __init__(self, channel: str, listener: Listener) -> None:
        self.channel = channel
        self.listener = listener
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.task = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while True:
            payload = await self.queue.get()
            try:
                await self.listener(payload)
            except Exception:  # one bad message must not end the subscription
                log.exception("a listener on %s failed", self.channel)

    async def stop(self) -> None:
        if self.task is asyncio.current_task():  # a listener unsubscribing itself: let it return
            self.task.cancel()
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
