"""An agent of the release before streams, against this broker (issue 13: an agent one version
older keeps working). It is simulated at the message level, speaking exactly what that release
spoke: heartbeats without `streams`, and it decodes only `reply` and `tunnel` — any other message
would have ended its channel. It still gets SSH tunnels and pushed keys; a terminal asked of it
is refused by the broker with a sentence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from pair.api import endpoints as ep
from pair.api import models as m
from tests.support.broker import real_broker
from tests.support.people import Person

pytestmark = pytest.mark.integration

OLD_BROKER_MESSAGE = m.ReplyMessage | m.TunnelRequest  # the union that release decoded


class OldAgent:
    """The control channel and tunnels of an agent that predates streams; its "sshd" echoes."""

    def __init__(self, url: str, credential: str, instance_id: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {credential}"}
        self.instance_id = instance_id
        self.replies: asyncio.Queue[m.HeartbeatReply] = asyncio.Queue()
        self.tunnels: list[str] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, control: ClientConnection) -> None:
        heartbeat = {"type": "heartbeat", "heartbeat": {"instance_id": self.instance_id, "state": "running"}}
        await control.send(json.dumps(heartbeat))
        async for raw in control:
            message = msgspec.json.decode(raw, type=OLD_BROKER_MESSAGE)  # raises on anything newer
            if isinstance(message, m.ReplyMessage):
                await self.replies.put(message.reply)
            else:
                self.tunnels.append(message.tunnel_id)
                task = asyncio.create_task(self.echo(message.tunnel_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def echo(self, tunnel_id: str) -> None:
        url = ep.websocket_url(self.url, ep.AGENT_TUNNEL.format(tunnel_id=tunnel_id))
        async with connect(url, additional_headers=self.headers) as ws:
            async for data in ws:
                await ws.send(data)


def test_an_agent_of_the_last_release_gets_ssh_tunnels_and_pushes_and_no_message_it_cannot_read(
    tmp_path: Path,
) -> None:
    with real_broker(tmp_path / "broker") as broker:
        alice, bob = Person(broker, "alice", tmp_path), Person(broker, "bob", tmp_path)
        alice.ok("spaces", "authorize", "--name", "demo", "--no-share")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        registration = httpx.post(
            broker.url + ep.BOOTSTRAP.path,
            json={"token": token, "instance_id": "old-container", "facts": {"hostname": "old"}},
            timeout=30,
        ).json()

        async def scenario() -> None:
            agent = OldAgent(broker.url, registration["agent_credential"], "old-container")
            person = {"Authorization": f"Bearer {alice.session_token}"}
            space_id = registration["space_id"]
            async with connect(ep.websocket_url(broker.url, ep.AGENT_CONNECT), additional_headers=agent.headers) as c:
                channel = asyncio.create_task(agent.run(c))
                first = await asyncio.wait_for(agent.replies.get(), 10)  # the answer to its heartbeat
                assert first.space_id == space_id

                tunnel_url = ep.websocket_url(broker.url, ep.SPACE_TUNNEL.format(space_id=space_id))
                async with connect(tunnel_url, additional_headers=person) as tunnel:
                    await tunnel.send(b"SSH-2.0-through a tunnel\r\n")
                    assert await asyncio.wait_for(tunnel.recv(), 10) == b"SSH-2.0-through a tunnel\r\n"
                assert len(agent.tunnels) == 1 and agent.tunnels[0].startswith("tun_")

                terminal_url = ep.websocket_url(broker.url, ep.SPACE_TERMINAL.format(space_id=space_id))
                with pytest.raises(InvalidStatus) as refused:
                    await connect(terminal_url, additional_headers=person, open_timeout=15)
                assert refused.value.response.status_code == 501
                body = json.loads(refused.value.response.body or b"{}")
                assert body["message"] == "The pair agent in this Space's container is too old for terminals."
                assert body["code"] == "agent_outdated"

                # A share reaches the agent as a push, not at its next heartbeat (it sends no more).
                await asyncio.to_thread(alice.ok, "spaces", "share", "--space", "demo", bob.email)
                pushed = await asyncio.wait_for(agent.replies.get(), 10)
                assert pushed.authorized_keys is not None
                assert {k.email for k in pushed.authorized_keys.keys} == {alice.email, bob.email}

                assert not channel.done(), channel  # every message so far was one it could read
                channel.cancel()

        asyncio.run(asyncio.wait_for(scenario(), 60))
