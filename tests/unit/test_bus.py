"""The in-memory bus: what callers may rely on of any Bus (broker.bus), so that a PostgreSQL
LISTEN/NOTIFY one can replace it: per-subscription order, channels kept apart, nothing for those
who left, a failing listener contained, payloads within NOTIFY's limit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from broker.bus import MAX_PAYLOAD, MemoryBus, PayloadTooLarge

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


class Inbox:
    """A listener that keeps what it got, and lets a test wait for the n-th message."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self._more = asyncio.Condition()

    async def __call__(self, payload: bytes) -> None:
        async with self._more:
            self.got.append(payload)
            self._more.notify_all()

    async def wait(self, count: int) -> list[bytes]:
        async with self._more:
            await self._more.wait_for(lambda: len(self.got) >= count)
        return self.got


def test_each_subscriber_of_a_channel_gets_its_messages_in_order_and_no_others() -> None:
    async def scenario() -> None:
        bus = MemoryBus()
        first, second, elsewhere = Inbox(), Inbox(), Inbox()
        await bus.subscribe("a", first)
        await bus.subscribe("a", second)
        await bus.subscribe("b", elsewhere)
        sent = [str(n).encode() for n in range(50)]
        for payload in sent:
            await bus.publish("a", payload)
        await bus.publish("b", b"for b")
        assert await first.wait(50) == sent
        assert await second.wait(50) == sent
        assert await elsewhere.wait(1) == [b"for b"]

    run(scenario())


def test_publishing_does_not_wait_for_listeners() -> None:
    async def scenario() -> None:
        bus = MemoryBus()
        release = asyncio.Event()
        heard = Inbox()

        async def slow(payload: bytes) -> None:
            await release.wait()
            await heard(payload)

        await bus.subscribe("a", slow)
        await bus.publish("a", b"one")
        await bus.publish("a", b"two")  # returns although the first is still being handled
        assert heard.got == []
        release.set()
        assert await heard.wait(2) == [b"one", b"two"]

    run(scenario())


def test_after_unsubscribing_nothing_more_arrives_and_the_channel_is_forgotten() -> None:
    async def scenario() -> None:
        bus = MemoryBus()
        inbox = Inbox()
        unsubscribe = await bus.subscribe("a", inbox)
        await bus.publish("a", b"before")
        await inbox.wait(1)
        await unsubscribe()
        assert bus.subscribers("a") == 0
        await bus.publish("a", b"after")
        late = Inbox()
        await bus.subscribe("a", late)  # nothing is kept for subscribers that come later
        await bus.publish("a", b"later")
        assert await late.wait(1) == [b"later"]
        assert inbox.got == [b"before"]

    run(scenario())


def test_a_failing_listener_is_logged_and_hears_the_next_message(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        bus = MemoryBus()
        inbox = Inbox()

        async def picky(payload: bytes) -> None:
            if payload == b"bad":
                raise ValueError("cannot take this one")
            await inbox(payload)

        await bus.subscribe("a", picky)
        await bus.publish("a", b"bad")
        await bus.publish("a", b"good")
        assert await inbox.wait(1) == [b"good"]

    with caplog.at_level(logging.ERROR, logger="pair.broker.bus"):
        run(scenario())
    [record] = caplog.records
    assert record.getMessage() == "a listener on a failed"
    assert record.exc_info is not None and "cannot take this one" in str(record.exc_info[1])


def test_payloads_are_held_to_notifys_limit() -> None:
    async def scenario() -> None:
        bus = MemoryBus()
        inbox = Inbox()
        await bus.subscribe("a", inbox)
        await bus.publish("a", bytes(MAX_PAYLOAD))
        with pytest.raises(PayloadTooLarge):
            await bus.publish("a", bytes(MAX_PAYLOAD + 1))
        assert [len(p) for p in await inbox.wait(1)] == [MAX_PAYLOAD]

    run(scenario())
    assert MAX_PAYLOAD < 8000  # PostgreSQL: "the payload string must be shorter than 8000 bytes"
