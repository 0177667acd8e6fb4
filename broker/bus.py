"""Publish/subscribe between the parts of the broker that must hear each other's news: pushes to
an agent, "end these streams", a Space's authorized keys changed (Coder's `pubsub`).

Callers publish to a channel and subscribe to channels; they never know which implementation
runs. `MemoryBus` serves one broker process; `broker.postgres_bus.PostgresBus` (LISTEN/NOTIFY)
serves several replicas sharing one PostgreSQL database, so the rules are NOTIFY's:

- a channel is 1 to `MAX_CHANNEL` bytes of UTF-8 text without NUL or line feed (a PostgreSQL
  identifier's length; PostgresBus carries most channels' names inside NOTIFY's payload, after
  which a line feed ends the name);
- a payload is UTF-8 text without NUL (NOTIFY's payload is a string) of at most `MAX_PAYLOAD`
  bytes (NOTIFY refuses 8000 and more, and the channel's name with its line feed rides in the
  same payload): ids and small sentences, never a snapshot — the receiver reads the rest from
  the store;
- delivery is asynchronous: when `publish` returns, listeners may not have run yet;
- each subscription sees its channel's messages in the order they were published, and a
  listener never runs concurrently with itself; nothing is kept for subscribers that come later.

Channels:

- `agent_channel(space_id)`: commands for the replica holding that Space's agent control
  channel (broker.events.AgentCommand); it subscribes while it holds the channel.
- `STREAMS`: every replica ends its own part of the streams named, and the one holding a stream
  hears its agent's refusal, or that its agent dialed another replica (broker.events.StreamEvent).
- `SNAPSHOTS`: a Space's authorized keys changed (its id): every replica drops its cached copy.
- `SPACES`: a Space's agent connected or its state or health moved (its id): every replica wakes
  the streams waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

Listener = Callable[[bytes], Awaitable[None]]
Unsubscribe = Callable[[], Awaitable[None]]

MAX_CHANNEL = 63  # bytes; a PostgreSQL identifier (NAMEDATALEN - 1)
# bytes; PostgreSQL's NOTIFY takes payloads shorter than 8000 bytes, and PostgresBus puts the
# channel's name and a line feed before the payload
MAX_PAYLOAD = 7999 - (MAX_CHANNEL + 1)

STREAMS = "pair_streams"
SNAPSHOTS = "pair_snapshots"
SPACES = "pair_spaces"
FAILURE_LOG_SECONDS = 60.0  # a subscription logs its listener's failures at most this often

log = logging.getLogger("pair.broker.bus")


def agent_channel(space_id: str) -> str:
    """The channel of commands for the agent of `space_id` (sp_ and 12 characters: 21 bytes)."""
    return f"pair_agent_{space_id}"


class PayloadTooLarge(ValueError):
    pass


class PayloadNotText(ValueError):
    pass


class InvalidChannel(ValueError):
    pass


def check_channel(channel: str) -> str:
    """`channel` if it is a channel's name: 1 to MAX_CHANNEL bytes of printable UTF-8 text (no
    NUL nor line feed: the line feed ends the name where PostgresBus carries it in a payload).
    InvalidChannel otherwise."""
    size = len(channel.encode(errors="replace"))
    if not 0 < size <= MAX_CHANNEL:
        raise InvalidChannel(f"a bus channel's name is 1 to {MAX_CHANNEL} bytes, not {size}")
    if not channel.isprintable():  # no NUL, no line feed, no other control character
        raise InvalidChannel(f"a bus channel's name is printable text: {channel!r}")
    return channel


def check_payload(payload: bytes) -> str:
    """`payload` as the text NOTIFY carries. PayloadTooLarge past MAX_PAYLOAD bytes,
    PayloadNotText when it is not UTF-8 or holds a NUL (PostgreSQL text cannot)."""
    if len(payload) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"a bus payload is at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise PayloadNotText(f"a bus payload is UTF-8 text: {exc}") from None
    if "\x00" in text:
        raise PayloadNotText("a bus payload cannot hold a NUL character")
    return text


class Bus(Protocol):
    # Whether other processes hear what is published here (PostgreSQL's bus); a bus that reaches
    # only its own process is helped by the outbox (broker.outbox) for the admin verbs.
    shared: bool

    async def publish(self, channel: str, payload: bytes) -> None:
        """Send `payload` (`check_payload`'s rules, else its errors) to every current
        subscriber of `channel` (`check_channel`'s rules, else InvalidChannel), in any process
        sharing this bus."""
        ...

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        """Call `listener(payload)` for each message published to `channel` from now on, until
        the returned function is awaited. A listener's exception is logged and the next message
        still delivered. InvalidChannel for a name outside `check_channel`'s rules. Costs no
        round trip to another process, however many channels a process subscribes to."""
        ...

    def on_gap(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call `callback()` whenever messages may have been lost (a bus whose connection was
        made again: nothing is kept for those not listening), so a process can re-check what it
        would have heard."""
        ...

    async def close(self) -> None:
        """Stop every subscription and let the bus's connections go."""
        ...


class MemoryBus:
    """The in-process Bus: each subscription has a queue and a task that calls its listener, so
    publishing never waits for listeners (as with NOTIFY) and every listener's error is
    collected in one place."""

    shared = False

    def __init__(self) -> None:
        self._subscriptions: dict[str, set[Subscription]] = {}

    async def publish(self, channel: str, payload: bytes) -> None:
        check_channel(channel)
        check_payload(payload)
        for subscription in list(self._subscriptions.get(channel, ())):
            subscription.queue.put_nowait(payload)

    async def subscribe(self, channel: str, listener: Listener) -> Unsubscribe:
        subscription = Subscription(check_channel(channel), listener)
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

    def on_gap(self, callback: Callable[[], Awaitable[None]]) -> None:
        pass  # in one process nothing is ever lost

    async def close(self) -> None:
        for subscriptions in list(self._subscriptions.values()):
            for subscription in list(subscriptions):
                await subscription.stop()
        self._subscriptions.clear()


class Subscription:
    """One listener of one channel: its own queue and task, so each subscription sees its
    messages in order and a listener never runs concurrently with itself (any Bus uses it)."""

    def __init__(self, channel: str, listener: Listener) -> None:
        self.channel = channel
        self.listener = listener
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._failure_logged_at: float | None = None  # monotonic seconds
        self._failures_held = 0
        self.task = asyncio.create_task(self._deliver())

    async def _deliver(self) -> None:
        while True:
            payload = await self.queue.get()
            try:
                await self.listener(payload)
            except Exception:  # one bad message must not end the subscription
                self._log_failure()

    def _log_failure(self) -> None:
        """Log the failure being handled, with its traceback, at most once per
        FAILURE_LOG_SECONDS; the next line says how many were held back. A flood of malformed
        messages (a replica of another release, a hand-made NOTIFY) logged a traceback each."""
        now = time.monotonic()
        if self._failure_logged_at is not None and now - self._failure_logged_at < FAILURE_LOG_SECONDS:
            self._failures_held += 1
            return
        held, self._failures_held = self._failures_held, 0
        self._failure_logged_at = now
        more = f" (and {held} more since the last such line)" if held else ""
        log.exception("a listener on %s failed%s", self.channel, more)

    async def stop(self) -> None:
        if self.task is asyncio.current_task():  # a listener unsubscribing itself: let it return
            self.task.cancel()
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
