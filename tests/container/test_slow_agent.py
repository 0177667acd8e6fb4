"""An agent slow to introduce itself is waited for, not judged too old (issue 14).

The broker learns what an agent can dial (`Heartbeat.streams`) from its channel's first heartbeat.
It used to wait 5 s for it and then treat a silent agent as one that predates streams: a terminal
asked of a new agent whose first heartbeat was late was refused as "too old for terminals"
(501 `agent_outdated`), and its `end_terminals` were never sent. Every agent, however old, sends a
heartbeat first, so silence says nothing of its age: the broker now waits for that heartbeat,
and a person's stream keeps its usual timeouts.

For real: the real broker, and the real `pair agent` in a Space's container (supervisord, sshd,
the agent in a mount namespace), bootstrapped through a TCP proxy on 127.0.0.1 (PAIR_URL) that can
hold what the agent says on a new control channel, as a slow agent or a slow network would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect

from pair.api import endpoints as ep
from pair.api import terminal as tp
from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container, eventually
from tests.support.people import Person

pytestmark = pytest.mark.integration

# Longer than the 5 s the broker used to wait for a first heartbeat, shorter than the 8 s a
# person's stream waits for the agent to dial in (broker.streams.AGENT_ANSWER_TIMEOUT): the
# slowness itself, not a wait for something that could be awaited.
SLOW = 6.0


class AgentProxy:
    """Between the container's agent and the broker. `hold_next()`: the agent's next control
    channel (GET /api/v1/agent/connect) is upgraded as usual, then every byte the agent sends on
    it (its first heartbeat first) waits until `release()`; the broker's bytes flow meanwhile."""

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port
        self._hold = False
        self.upgraded = asyncio.Event()  # the held channel has its 101: the broker holds it now
        self.released = asyncio.Event()
        self.controls: list[asyncio.StreamWriter] = []
        self.writers: set[asyncio.StreamWriter] = set()  # both ends of every connection, to cut at the end
        self.connections: set[asyncio.Task[None]] = set()

    def hold_next(self) -> None:
        self._hold = True
        self.upgraded.clear()
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def drop_control_channels(self) -> None:
        """Cut the agent's control channels, as a network would: it reconnects by itself."""
        for writer in self.controls:
            writer.transport.abort()
        self.controls.clear()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        broker_reader, broker_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
        self.writers |= {writer, broker_writer}
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            control = head.startswith(f"GET {ep.AGENT_CONNECT} ".encode())
            held, self._hold = control and self._hold, self._hold and not control
            if control:
                self.controls.append(writer)
            broker_writer.write(head)

            async def down() -> None:
                while data := await broker_reader.read(65536):
                    writer.write(data)
                    await writer.drain()
                    if held:
                        self.upgraded.set()

            async def up() -> None:
                if held:
                    await self.released.wait()
                while data := await reader.read(65536):
                    broker_writer.write(data)
                    await broker_writer.drain()

            ways = {asyncio.ensure_future(down()), asyncio.ensure_future(up())}
            _, pending = await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)  # one side ended
            for way in pending:
                way.cancel()
            await asyncio.gather(*ways, return_exceptions=True)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in (writer, broker_writer):
                w.transport.abort()


@asynccontextmanager
async def agent_proxy(broker_url: str) -> AsyncIterator[tuple[AgentProxy, str]]:
    proxy = AgentProxy(urlsplit(broker_url).port or 80)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    try:
        yield proxy, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        proxy.release()
        for writer in proxy.writers:
            writer.transport.abort()
        await asyncio.gather(*proxy.connections, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 5)


@pytest.fixture
def space(tmp_path: Path) -> Iterator[tuple[RealBroker, Person, Container]]:
    # The default agent interval: the silent-Space sweep must not stop the Space while it is held.
    with real_broker(tmp_path / "broker") as broker, container(tmp_path / "space") as box:
        alice = Person(broker, "alice", tmp_path)
        alice.ok("spaces", "authorize", "--no-share", "--name", "demo")
        yield broker, alice, box


def test_a_new_agent_slow_to_introduce_itself_gets_its_terminal_not_too_old(
    space: tuple[RealBroker, Person, Container],
) -> None:
    broker, alice, box = space
    token = (alice.dir / "SPACE_ID.txt").read_text().strip()

    async def scenario() -> None:
        async with agent_proxy(broker.url) as (proxy, proxy_url):
            booted = await asyncio.to_thread(alice.pair, "spaces", "bootstrap", token, env=box.env(PAIR_URL=proxy_url))
            assert booted.returncode == 0, booted.stderr
            await asyncio.to_thread(eventually, lambda: alice.state("demo") == "running", "the Space is running")
            space_id = next(str(s["id"]) for s in alice.spaces() if s["name"] == "demo")

            # The agent's channel drops; the new one is upgraded, and then the agent is slow.
            proxy.hold_next()
            proxy.drop_control_channels()
            await asyncio.wait_for(proxy.upgraded.wait(), 30)

            url = ep.websocket_url(broker.url, ep.SPACE_TERMINAL.format(space_id=space_id)) + "?cols=80&rows=24"
            asyncio.get_running_loop().call_later(SLOW, proxy.release)
            asked = time.monotonic()
            headers = {"Authorization": f"Bearer {alice.session_token}"}
            async with connect(url, additional_headers=headers, open_timeout=30) as ws:
                waited = time.monotonic() - asked
                first = await asyncio.wait_for(ws.recv(), 20)
                assert isinstance(first, str) and isinstance(tp.decode_server(first), tp.Hello)
                await ws.send(b"echo $((6*7))\n")
                output = b""
                while b"42" not in output:
                    frame = await asyncio.wait_for(ws.recv(), 20)
                    output += frame if isinstance(frame, bytes) else b""
            assert waited >= SLOW - 0.5  # it was answered once the agent had spoken, not before

    asyncio.run(asyncio.wait_for(scenario(), 120))
    assert "too old" not in broker.output.text()
