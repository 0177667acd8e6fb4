"""Two broker replicas on one real PostgreSQL server (issue 13), for real: two `pair-broker serve`
sharing a database the tests start, a Space's container (supervisord, sshd, `pair agent`) and the
real `pair`; directly, and behind Debian's nginx terminating TLS with a test CA
(tests/support/tls.py: round robin over both replicas, and one nginx per replica to address each).

A person's stream that lands on one replica while the agent is on the other is spliced across
them; unsharing through one replica ends the streams held by the other within 2 s; kill -9 of the
replica holding the agent: the agent is back on the other within 10 s, a connection asked
meanwhile waits for it, `pair spaces connect` works at once, and every write acknowledged with a
2xx is still there; PostgreSQL restarting:
both replicas listen again and serve on."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.client import Client
from pair.api.closecodes import CloseCode
from pair.api.errors import PairError
from tests.container.conftest import BROKER_ENV
from tests.container.test_streams import Terminal, opening, run
from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container, eventually, free_port
from tests.support.people import Person
from tests.support.postgres import PostgresServer, postgres_server
from tests.support.tls import test_ca, tls_proxy

pytestmark = pytest.mark.integration

KEY = base64.b64encode(bytes(range(32))).decode()  # the encryption key every replica gets
ENV = {**BROKER_ENV, "PAIR_BROKER_ENCRYPTION_KEY": KEY}


@dataclass
class Replicas:
    one: RealBroker  # url: where people and agents address replica 1 (itself, or its own nginx)
    two: RealBroker
    public_url: str  # what tokens carry: replica 1 itself, or nginx over both
    addresses: tuple[str, str]  # each replica's own http:// address (as registered in the database)
    database: str
    postgres: PostgresServer


@contextmanager
def replicas_on(
    postgres: PostgresServer, root: Path, public_url: str, port: int = 0, one_args: tuple[str, ...] = ()
) -> Iterator[Replicas]:
    """Two replicas on a fresh database, both with `public_url`; the first on `port`, with `one_args`."""
    database = postgres.create_database(migrated=False)
    public = ("--public-url", public_url)
    try:
        with (
            real_broker(root / "replica-1", *public, *one_args, port=port, database=database, env=ENV) as one,
            real_broker(root / "replica-2", *public, database=database, env=ENV, fresh=False) as two,
        ):
            yield Replicas(one, two, public_url, (one.url, two.url), database, postgres)
    finally:
        postgres.drop_database(database)


def upstream(broker: RealBroker) -> str:
    return broker.url.removeprefix("http://")


@pytest.fixture(params=["direct", "tls"])
def replicas(
    request: pytest.FixtureRequest, postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Replicas]:
    """Two replicas addressed directly (tokens name the first), or through TLS at nginx: tokens
    name nginx over both, and each replica has an nginx of its own for addressing it."""
    if request.param == "direct":
        port = free_port()
        with replicas_on(postgres, tmp_path, f"http://127.0.0.1:{port}", port) as plain:
            yield plain
        return
    ca = test_ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # people, supervisord and the agent inherit it
    port = free_port()
    with (
        replicas_on(postgres, tmp_path, f"https://127.0.0.1:{port}") as plain,
        tls_proxy(tmp_path / "nginx", [upstream(plain.one), upstream(plain.two)], ca, port=port),
        tls_proxy(tmp_path / "nginx-1", [upstream(plain.one)], ca) as to_one,
        tls_proxy(tmp_path / "nginx-2", [upstream(plain.two)], ca) as to_two,
    ):
        yield dataclasses.replace(
            plain,
            one=dataclasses.replace(plain.one, url=to_one.url),
            two=dataclasses.replace(plain.two, url=to_two.url),
        )


@dataclass
class World:
    replicas: Replicas
    alice: Person  # on replica 1
    bob: Person  # on replica 2
    box: Container
    space_id: str


@pytest.fixture
def world(replicas: Replicas, tmp_path: Path) -> Iterator[World]:
    with world_on(replicas, tmp_path) as made:
        yield made


@contextmanager
def world_on(replicas: Replicas, tmp_path: Path) -> Iterator[World]:
    """alice (on replica 1) bootstraps "demo", shared with bob (on replica 2), in a real container
    whose agent connects to replica 1 (bootstrapped with PAIR_URL naming it)."""
    bob = Person(replicas.two, "bob", tmp_path)
    alice = Person(replicas.one, "alice", tmp_path)
    alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
    token = (alice.dir / "SPACE_ID.txt").read_text().strip()
    with container(tmp_path / "space") as box:
        booted = alice.pair("spaces", "bootstrap", token, env=box.env(PAIR_URL=replicas.one.url))
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
    assert held_by(world) == world.replicas.addresses[0]  # the agent is on replica 1; bob's CLI on replica 2

    async def scenario() -> None:
        terminal_url = ep.websocket_url(two.url, ep.SPACE_TERMINAL.format(space_id=world.space_id))
        async with opening(world.bob, terminal_url) as ws:
            hello = tp.decode_server(await ws.recv())
            assert isinstance(hello, tp.Hello) and hello.email == world.bob.email
            terminal = Terminal(ws)
            await ws.send(b"echo across-$((40+2))\r")
            await terminal.until(b"across-42\r\n")  # typed on replica 2, run by the agent on replica 1
            # What the agent reports on replica 1 (its terminals) replica 2 lists too.
            listed = await asyncio.to_thread(world.bob.ok, "spaces", "terminals", "demo", "--json")
            assert [t["id"] for t in json.loads(listed)] == [hello.terminal_id]
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
        "SELECT t.kind, r.address, t.closed_at IS NOT NULL FROM streams t JOIN replicas r ON r.id = t.replica_id"
        " ORDER BY t.opened_at, t.kind",
    )
    logged_by = world.replicas.addresses[1]
    assert sorted(rows) == [("ssh", logged_by, True), ("terminal", logged_by, True)]
    for replica in (one, two):
        said = replica.output.text()
        assert "Traceback" not in said and "never retrieved" not in said


@pytest.mark.parametrize("replicas", ["direct"], indirect=True)
def test_pushes_and_up_reach_the_agent_through_the_other_replica(world: World) -> None:
    """A key added, `down` and `up` through replica 2 reach the agent on replica 1 (the bus), and
    so does an admin verb's change; only a replica proving the secret derived from the
    encryption key may claim a stream."""
    internal = ep.websocket_url(world.replicas.addresses[1], "/internal/v1/streams/tun_aaaaaaaaaaaa")

    async def strangers() -> None:
        assert await upgrade(internal, {}) == 403
        assert await upgrade(internal, {"Authorization": f"Bearer {world.bob.session_token}"}) == 403
        assert await upgrade(internal, {"Authorization": "Bearer " + "A" * 43}) == 403

    run(strangers())
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
    # An admin verb runs in a process of its own: on PostgreSQL it publishes on the replicas' bus.
    removed = world.replicas.two.admin("users", "remove", carol.email)
    assert removed.returncode == 0, removed.stderr
    eventually(lambda: carol.email not in (world.box.snapshot_emails() or {carol.email}), "carol's key left", 5)


async def upgrade(url: str, headers: dict[str, str]) -> int:
    """The status a WebSocket upgrade to `url` is answered with (101 when accepted)."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=10):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# -- kill -9 of the replica holding the agent ----------------------------------------------------------


def new_public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


class Writer(threading.Thread):
    """Adds SSH keys through nginx as fast as answers come, keeping the ids of those answered 2xx."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(url, token=token, timeout=10)
        self.acknowledged: list[str] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.client:
            while not self.stop.is_set():
                try:
                    self.acknowledged.append(self.client.add_key(new_public_key()).id)
                except PairError:  # 502 from nginx, or the connection cut: not acknowledged
                    self.failed += 1


def test_kill_9_of_the_replica_holding_the_agent(
    postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = test_ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))
    port = free_port()
    with (
        replicas_on(postgres, tmp_path, f"https://127.0.0.1:{port}") as plain,
        tls_proxy(tmp_path / "nginx", [upstream(plain.one), upstream(plain.two)], ca, port=port) as proxy,
    ):
        behind = dataclasses.replace(plain.one, url=proxy.url)
        alice, bob = Person(behind, "alice", tmp_path), Person(behind, "bob", tmp_path)
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        with container(tmp_path / "space") as box:
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())  # through nginx: either replica
            assert booted.returncode == 0, booted.stderr
            eventually(lambda: alice.state("demo") == "running", "the Space is running")
            space_id = next(str(s["id"]) for s in alice.spaces() if s["name"] == "demo")
            world = World(plain, alice, bob, box, space_id)
            holder = eventually(lambda: held_by(world), "an agent channel is recorded")
            victim, survivor = (plain.one, plain.two) if holder == plain.addresses[0] else (plain.two, plain.one)

            internal = "/internal/v1/streams/tun_aaaaaaaaaaaa"
            assert run(upgrade(ep.websocket_url(proxy.url, internal), {})) == 404  # nginx keeps it inside
            assert run(upgrade(ep.websocket_url(victim.url, internal), {})) == 403  # the replica refuses

            writer = Writer(proxy.url, alice.session_token)
            writer.start()
            eventually(lambda: len(writer.acknowledged) >= 5, "writes are acknowledged")
            victim.proc.kill()  # SIGKILL: no goodbye to agents, people, the registry or the database
            killed = time.monotonic()
            # Asked right after the kill: the registry may count the dead replica's channel for
            # 7 s more; the stream then waits for the agent to reconnect and is asked again there
            # (tests/unit/test_streams.py holds that case exactly; here it is a race).
            with ThreadPoolExecutor(1) as pool:
                meanwhile = pool.submit(bob.run_in_space, "echo", "asked", "meanwhile")
                eventually(lambda: held_by(world) == survivor.url, "the agent is on the other replica", timeout=10)
                back_after = time.monotonic() - killed
                during = meanwhile.result(30)
            assert during.returncode == 0, during.stderr
            assert during.stdout == "asked meanwhile\n"
            done = bob.run_in_space("echo", "still", "here")  # at once: through nginx, to the survivor
            assert done.returncode == 0, done.stderr
            assert done.stdout == "still here\n"
            writer.stop.set()
            writer.join(20)
            assert back_after < 10, back_after

            acknowledged = set(writer.acknowledged)
            assert len(acknowledged) > 5
            with Client(proxy.url, token=alice.session_token) as client:
                stored = {k.id for k in client.ssh_keys()}
            assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged writes are missing"
        said = survivor.output.text()
        assert "Traceback" not in said and "never retrieved" not in said, said


# -- PostgreSQL restarting under the replicas ---------------------------------------------------------


def test_replicas_recover_when_postgresql_restarts(tmp_path: Path) -> None:
    """PostgreSQL restarts (every connection cut): each replica's bus says so and listens again,
    and both serve again, without a restart of their own. A server of this test's own."""
    with postgres_server() as own, replicas_on(own, tmp_path, "http://127.0.0.1:1") as plain:
        bob = Person(plain.two, "bob", tmp_path, ssh_key=False)
        alice = Person(plain.one, "alice", tmp_path, ssh_key=False)
        own.restart()
        for replica in (plain.one, plain.two):
            replica.output.wait_for(r"the bus lost its PostgreSQL connection")
            replica.output.wait_for(r"the bus listens on PostgreSQL again \(\d+ channels\)")
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "after")  # through replica 1
        assert [s["name"] for s in bob.spaces()] == ["after"]  # read through replica 2
        for replica in (plain.one, plain.two):
            assert replica.proc.poll() is None
            assert "Traceback" not in replica.output.text()


def test_unshare_after_postgresql_restarted_answers_2xx_and_ends_the_session_on_the_other_replica(
    tmp_path: Path,
) -> None:
    """PostgreSQL restarts under two replicas while bob's terminal (through replica 2) reaches
    the agent on replica 1: every pooled connection is dead, yet alice's unshare answers 2xx
    (the pools check a connection before lending it) and bob's terminal ends within 2 s (the bus
    sends the message on a new connection instead of failing a committed change)."""
    port = free_port()
    with (
        postgres_server() as own,
        replicas_on(own, tmp_path, f"http://127.0.0.1:{port}", port) as plain,
        world_on(plain, tmp_path) as world,
    ):

        async def scenario() -> None:
            terminal_url = ep.websocket_url(plain.two.url, ep.SPACE_TERMINAL.format(space_id=world.space_id))
            async with opening(world.bob, terminal_url) as ws:
                terminal = Terminal(ws)
                await ws.send(b"echo before-$((40+2))\r")
                await terminal.until(b"before-42\r\n")
                await asyncio.to_thread(own.restart)
                for replica in (plain.one, plain.two):
                    await asyncio.to_thread(replica.output.wait_for, r"the bus listens on PostgreSQL again")
                unshared = await asyncio.to_thread(
                    world.alice.pair, "spaces", "unshare", "--space", "demo", world.bob.email
                )
                assert unshared.returncode == 0, unshared.stderr
                await asyncio.wait_for(ws.wait_closed(), 2)
                assert ws.close_code == CloseCode.REVOKED

        run(scenario())
        assert "demo" not in [s["name"] for s in world.bob.spaces()]  # the unshare was committed, once
        for replica in (plain.one, plain.two):
            assert replica.proc.poll() is None
            said = replica.output.text()
            assert "Traceback" not in said and "never retrieved" not in said, said


def test_a_replica_with_a_wrong_address_says_so_and_people_read_it_is_the_brokers_fault(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Replica 1 advertises an address where nothing answers: it says so in its log once it
    serves (replica 2, rightly addressed, says it answers), and bob's terminal through replica 2,
    whose agent end dials replica 1, is refused at once as the broker's fault, not the container's."""
    port = free_port()
    wrong = ("--replica-address", f"http://127.0.0.1:{free_port()}")
    with (
        replicas_on(postgres, tmp_path, f"http://127.0.0.1:{port}", port, one_args=wrong) as plain,
        world_on(plain, tmp_path) as world,
    ):
        plain.one.output.wait_for(r"cannot be reached at its --replica-address http://127\.0\.0\.1:\d+ \(")
        plain.two.output.wait_for(r"answers at its --replica-address")
        terminal_url = ep.websocket_url(plain.two.url, ep.SPACE_TERMINAL.format(space_id=world.space_id))

        async def refused() -> tuple[int, dict[str, str], float]:
            started = asyncio.get_running_loop().time()
            try:
                async with opening(world.bob, terminal_url):
                    raise AssertionError("the terminal opened")
            except InvalidStatus as exc:
                body = json.loads(exc.response.body or b"{}")
                return exc.response.status_code, body, asyncio.get_running_loop().time() - started

        status, body, took = run(refused())
        assert (status, body["code"]) == (502, "unavailable"), body
        assert body["message"] == "Another broker replica could not be reached to carry this stream."
        assert "container" not in body["message"]
        assert took < 5, took  # at once, not after the agent's answer timeout
