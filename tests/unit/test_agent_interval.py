"""The agent heartbeats at the broker's interval from its first reply on: before that reply it only
guesses the interval (10 s), and a broker with a shorter one (PAIR_BROKER_AGENT_INTERVAL) would
mark the Space stopped, and `pair verify` would refuse a snapshot gone stale, while it slept on
the guess. The control channel here is a stand-in that answers every heartbeat at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from pair.api.models import AuthorizedKeys, HeartbeatMessage, HeartbeatReply, ReplyMessage
from pair.container.agent import Agent
from pair.container.home import Home, Registration

INTERVAL = 0.05


class Channel:
    """Answers each heartbeat with a reply carrying the broker's (short) interval."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self.third = asyncio.Event()

    async def send(self, text: str) -> None:
        msgspec.json.decode(text, type=HeartbeatMessage)
        self.sent.append(asyncio.get_running_loop().time())
        if len(self.sent) >= 3:
            self.third.set()
        reply = HeartbeatReply(
            space_id="sp_x",
            space_name="demo",
            desired_state="running",
            interval_seconds=INTERVAL,
            snapshot_max_age=3,
            authorized_keys=AuthorizedKeys(version="v1", login_user="root", keys=[]),
        )
        await self.replies.put(msgspec.json.encode(ReplyMessage(reply=reply)).decode())

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> str:
        return await self.replies.get()


def test_the_second_heartbeat_follows_the_brokers_interval_not_the_guess(tmp_path: Path) -> None:
    async def run() -> list[float]:
        agent = Agent(Home(tmp_path))
        channel = Channel()
        reg = Registration(url="http://broker", space_id="sp_x", space_name="demo", credential="pair_ac_x")
        serving = asyncio.create_task(agent._channel(channel, reg, "instance-1"))  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(channel.third.wait(), 5)  # the guess alone would take 10 s
        finally:
            agent.stop.set()
            await asyncio.wait_for(serving, 5)
        return channel.sent

    sent = asyncio.run(run())
    assert sent[1] - sent[0] < 1.0
    assert (tmp_path / "authorized_keys").exists()  # each reply re-stamped the snapshot
