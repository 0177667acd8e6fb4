"""Terminals and ports over the one stream primitive, for real: the real broker asks the real agent
in the Space's container (supervisord, sshd, `pair agent`) for a stream to a PTY or to
127.0.0.1:PORT, and splices it to a person's WebSocket; the agent's allow-list refuses pair's own
port; and unshare ends a person's streams of every kind at once.

The container fixture is a mount namespace sharing this machine's network, so a server this test
starts on 127.0.0.1 is a server in the container."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode
from tests.container.conftest import World
from tests.support.container import eventually, free_port
from tests.support.people import Person

pytestmark = pytest.mark.integration
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 90))


def running(world: World) -> str:
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    return next(str(s["id"]) for s in world.alice.spaces() if s["name"] == "demo")


def url(world: World, path: str, space_id: str, **params: object) -> str:
    return ep.websocket_url(world.broker.url, path.format(space_id=space_id, **params))


def opening(person: Person, address: str) -> connect:
    return connect(address, additional_headers={"Authorization": f"Bearer {person.session_token}"}, open_timeout=20)


class Terminal:
    """A person's terminal stream: everything the shell printed, and waits on it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = bytearray()
        self.messages: list[tp.ServerMessage] = []

    async def _next(self) -> None:
        frame = await self.ws.recv()
        if isinstance(frame, bytes):
            self.output += frame
        else:
            self.messages.append(tp.decode_server(frame))

    async def until(self, wanted: bytes) -> None:
        while wanted not in self.output:
            await self._next()

    async def to_the_end(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self._next()


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1 (in the container: it shares this machine's network); its
    port. Every connection is closed and collected before it returns."""
    connections: set[asyncio.Task[Any]] = set()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
    for connection in connections:
        connection.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


def sessions(world: World) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(world.alice.ok("spaces", "sessions", "demo", "--json"))
    return rows


def test_a_terminal_stream_runs_a_login_shell_in_the_space(world: World) -> None:
    space_id = running(world)

    async def scenario() -> None:
        async with opening(world.alice, url(world, ep.SPACE_TERMINAL, space_id) + "?cols=100&rows=30") as ws:
            terminal = Terminal(ws)
            hello = tp.decode_server(await ws.recv())
            assert isinstance(hello, tp.Hello)
            assert (hello.email, hello.role, hello.cols, hello.rows) == (world.alice.email, "driver", 100, 30)
            await ws.send(b"echo $((6*7))\r")
            await terminal.until(b"42\r\n")
            [row] = await asyncio.to_thread(sessions, world)
            assert (row["kind"], row["email"]) == ("terminal", world.alice.email)
            assert row["id"].startswith("pty_") and row["bytes_in"] > 0 and row["bytes_out"] > 0
            await ws.send(b"exit\r")
            await terminal.to_the_end()
            assert isinstance(terminal.messages[-1], tp.Exited) and terminal.messages[-1].status == 0
            assert ws.close_code == CloseCode.NORMAL

    run(scenario())
    assert "terminal term_" in world.box.log("pair-agent.log")  # the agent logs who opened it, never what was typed
    assert "6*7" not in world.box.log("pair-agent.log")


def test_a_tcp_stream_reaches_a_port_in_the_space_for_a_teammate(world: World) -> None:
    space_id = running(world)

    async def scenario() -> None:
        async with echo_server() as port, opening(world.bob, url(world, ep.SPACE_PORT, space_id, port=port)) as ws:
            payload = bytes(range(256)) * 1024  # 256 KiB, in several frames each way
            await ws.send(payload)
            echoed = bytearray()
            while len(echoed) < len(payload):
                echoed += await ws.recv(decode=False)
            assert echoed == payload
            [row] = await asyncio.to_thread(sessions, world)
            assert (row["kind"], row["email"]) == ("port", world.bob.email)
            assert row["id"].startswith("tcp_")

    run(scenario())


def test_the_agent_refuses_pairs_own_port_and_says_when_nothing_listens(world: World) -> None:
    space_id = running(world)

    async def refused(path: str) -> tuple[int, dict[str, str]]:
        with pytest.raises(InvalidStatus) as caught:
            await opening(world.bob, path)
        response = caught.value.response
        return response.status_code, json.loads(response.body or b"{}")

    async def scenario() -> None:
        sshd = world.box.ssh_port
        status, body = await refused(url(world, ep.SPACE_PORT, space_id, port=sshd))
        assert status == 403 and body["code"] == "target_not_allowed"
        own = f"Port {sshd} is pair's own in the container; only its owner can share it, on purpose."
        assert body["message"] == own
        closed = free_port()
        status, body = await refused(url(world, ep.SPACE_PORT, space_id, port=closed))
        assert status == 502 and body["code"] == "target_unreachable"
        assert body["message"] == f"port {closed} in the container is not reachable (Connection refused)."
        status, body = await refused(url(world, ep.SPACE_PORT, space_id, port=65536))
        assert status == 422 and body["message"] == "'65536' is not a TCP port."

    run(scenario())
    assert world.alice.ok("spaces", "sessions", "demo").startswith("Nobody is connected")


def test_unshare_ends_a_persons_ssh_terminal_and_port_streams_within_two_seconds(world: World) -> None:
    space_id = running(world)
    bobs_terminal = ""

    async def scenario() -> None:
        nonlocal bobs_terminal
        async with (
            echo_server() as port,
            opening(world.bob, url(world, ep.SPACE_TERMINAL, space_id)) as terminal,
            opening(world.bob, url(world, ep.SPACE_PORT, space_id, port=port)) as tcp,
            opening(world.alice, url(world, ep.SPACE_TERMINAL, space_id)) as alices,
        ):
            hello = tp.decode_server(await terminal.recv())
            assert isinstance(hello, tp.Hello)
            bobs_terminal = hello.terminal_id
            with world.bob.session() as ssh:
                kinds = sorted((r["email"].split("@")[0], r["kind"]) for r in await asyncio.to_thread(sessions, world))
                assert kinds == [("alice", "terminal"), ("bob", "port"), ("bob", "ssh"), ("bob", "terminal")]
                loop = asyncio.get_running_loop()
                started = loop.time()
                await asyncio.to_thread(world.alice.ok, "spaces", "unshare", "--space", "demo", world.bob.email)
                for ws in (terminal, tcp):
                    await asyncio.wait_for(ws.wait_closed(), 2)
                    assert ws.close_code == CloseCode.REVOKED
                    assert ws.close_reason == f'{world.alice.email} stopped sharing "demo" with you.'
                assert await asyncio.to_thread(ssh.wait, 2) != 0
                assert loop.time() - started < 2 + 1  # the unshare command's own time included
                assert ssh.stderr is not None and "stopped sharing" in ssh.stderr.read()
            await alices.send(b"echo still-here\r")
            await Terminal(alices).until(b"still-here\r\n")  # alice's terminal is not bob's to lose
        rows = await asyncio.to_thread(sessions, world)
        assert [r["email"] for r in rows] == []

    run(scenario())
    # The agent heard it too: the terminal bob started is gone for everyone, not left running.
    eventually(lambda: f"terminal {bobs_terminal}: the shell ended" in world.box.log("pair-agent.log"), "it ended")
    agent_log = world.box.log("pair-agent.log")
    assert "Traceback" not in agent_log and "never retrieved" not in agent_log
    broker_log = "".join(world.broker.output.lines)
    assert "Traceback" not in broker_log and "never retrieved" not in broker_log
