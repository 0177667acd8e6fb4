"""Two broker replicas on one real PostgreSQL server (issue 13), for real: two `pair-broker serve`
sharing a database the tests start, a Space's container (supervisord, sshd, `pair agent`) whose
agent holds its control channel on the first, and people on the second. A person's stream that
lands on one replica while the agent is on the other is spliced across them; unsharing through
one replica ends the streams held by the other within 2 s."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode
from tests.container.conftest import BROKER_ENV
from tests.container.test_streams import Terminal, opening, run
from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container, eventually, free_port
from tests.support.people import Person
from tests.support.postgres import PostgresServer

pytestmark = pytest.mark.integration

KEY = base64.b64encode(bytes(range(32))).decode()  # the encryption key every replica gets
ENV = {**BROKER_ENV, "PAIR_BROKER_ENCRYPTION_KEY": KEY}


@dataclass
class Replicas:
    one: RealBroker
    two: RealBroker
    database: str
    postgres: PostgresServer


@pytest.fixture
def replicas(postgres: PostgresServer, tmp_path: Path) -> Iterator[Replicas]:
    """Two replicas on a fresh database, both naming the first as the public URL (what tokens
    carry, so the agent dials the first)."""
    database = postgres.create_database(migrated=False)
    port = free_port()
    public = ("--public-url", f"http://127.0.0.1:{port}")
    try:
        with (
            real_broker(tmp_path / "replica-1", *public, port=port, database=database, env=ENV) as one,
            real_broker(tmp_path / "replica-2", *public, database=database, env=ENV, fresh=False) as two,
        ):
            yield Replicas(one, two, database, postgres)
    finally:
        postgres.drop_database(database)


@dataclass
class World:
    replicas: Replicas
    alice: Person  # on replica 1
    bob: Person  # on replica 2
    box: Container
    space_id: str


@pytest.fixture
def world(replicas: Replicas, tmp_path: Path) -> Iterator[World]:
    """alice (on replica 1) bootstraps "demo", shared with bob (on replica 2), in a real container
    whose agent connects to replica 1."""
    bob = Person(replicas.two, "bob", tmp_path)
    alice = Person(replicas.one, "alice", tmp_path)
    alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
    token = (alice.dir / "SPACE_ID.txt").read_text().strip()
    with container(tmp_path / "space") as box:
        booted = alice.pair("spaces", "bootstrap", token, env=box.env())
        assert booted.returncode == 0, booted.stderr
        eventually(lambda: bob.state("demo") == "running", "the Space is running, as replica 2 sees it")
        space_id = next(str(s["id"]) for s in bob.spaces() if s["name"] == "demo")
        yield World(replicas, alice, bob, box, space_id)


def held_by(world: World) -> str:
    """The address of the replica recorded holding the Space's agent channel."""
    rows = world.replicas.postgres.rows(
        world.replicas.database,
        "SELECT r.address FROM agent_channels c JOIN replicas r ON r.id = c.replica_id"
        f" WHERE c.space_id = '{world.space_id}'",
    )
    return str(rows[0][0]) if rows else ""


def test_a_persons_streams_on_one_replica_reach_the_agent_on_the_other_and_unshare_ends_them(world: World) -> None:
    one, two = world.replicas.one, world.replicas.two
    assert held_by(world) == one.url  # the agent is on replica 1; bob's CLI speaks to replica 2

    async def scenario() -> None:
        terminal_url = ep.websocket_url(two.url, ep.SPACE_TERMINAL.format(space_id=world.space_id))
        async with opening(world.bob, terminal_url) as ws:
            hello = tp.decode_server(await ws.recv())
            assert isinstance(hello, tp.Hello) and hello.email == world.bob.email
            terminal = Terminal(ws)
            await ws.send(b"echo across-$((40+2))\r")
            await terminal.until(b"across-42\r\n")  # typed on replica 2, run by the agent on replica 1
            with world.bob.session() as ssh:  # ssh through real sshd, the same way
                started = asyncio.get_running_loop().time()
                await asyncio.to_thread(world.alice.ok, "spaces", "unshare", "--space", "demo", world.bob.email)
                await asyncio.wait_for(ws.wait_closed(), 2)
                assert ws.close_code == CloseCode.REVOKED
                assert ws.close_reason == f'{world.alice.email} stopped sharing "demo" with you.'
                assert await asyncio.to_thread(ssh.wait, 2) != 0
                assert asyncio.get_running_loop().time() - started < 2 + 1  # unshare's own run included
                assert ssh.stderr is not None and "stopped sharing" in ssh.stderr.read()

    run(scenario())
    # Both streams were logged by replica 2 and closed there.
    rows = world.replicas.postgres.rows(
        world.replicas.database,
        "SELECT t.kind, r.address, t.closed_at IS NOT NULL FROM tunnels t JOIN replicas r ON r.id = t.replica_id"
        " ORDER BY t.opened_at, t.kind",
    )
    assert sorted(rows) == [("ssh", two.url, True), ("terminal", two.url, True)]
    for replica in (one, two):
        said = replica.output.text()
        assert "Traceback" not in said and "never retrieved" not in said


def test_pushes_and_up_reach_the_agent_through_the_other_replica(world: World) -> None:
    """A key added, `down` and `up` through replica 2 reach the agent on replica 1 (the bus)."""
    carol = Person(world.replicas.two, "carol", world.alice.dir.parent)
    world.alice.ok("spaces", "share", "--space", "demo", carol.email)
    eventually(lambda: carol.email in (world.box.snapshot_emails() or set()), "carol's key reached the container")
    two = world.replicas.two.url
    world.alice.ok("login", world.alice.email, "--key-file", str(world.alice.key_file), "--url", two)
    world.alice.ok("spaces", "down", "demo")
    eventually(lambda: world.alice.state("demo") == "stopped", "the agent stopped sshd")
    world.alice.ok("spaces", "up", "demo")  # replica 2 knows the agent is connected (to replica 1)
    eventually(lambda: world.alice.state("demo") == "running", "the agent started sshd again")
    done = carol.run_in_space("echo", "carol-was-here")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "carol-was-here\n"


def test_the_internal_channel_refuses_anyone_without_the_replicas_secret(world: World) -> None:
    """Only a replica proving the secret derived from the encryption key may claim a stream."""
    two = world.replicas.two
    url = ep.websocket_url(two.url, "/internal/v1/streams/tun_aaaaaaaaaaaa")

    async def attempt(headers: dict[str, str]) -> int:
        try:
            async with connect(url, additional_headers=headers, open_timeout=10):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> None:
        assert await attempt({}) == 403
        assert await attempt({"Authorization": f"Bearer {world.bob.session_token}"}) == 403
        assert await attempt({"Authorization": "Bearer " + "A" * 43}) == 403

    run(scenario())
