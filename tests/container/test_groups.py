"""Groups and quotas with a real container (issue 16): a Space shared with a group lets its
members in, a member taken out loses their SSH session and terminal within 2 s and their key at once; a real
bootstrap past the compute quota is refused without spending its token, and runs once there is
room."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.client import Client
from pair.api.closecodes import CloseCode
from tests.container.conftest import BROKER_ENV, World
from tests.support.broker import real_broker
from tests.support.container import container, eventually
from tests.support.people import Person

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(world: World) -> Iterator[Client]:
    """The broker's first admin, over the API (the serving process ends sessions at once)."""
    broker = world.broker
    with Client(broker.url) as anonymous:
        session = anonymous.login(broker.admin_email, broker.admin_key_file.read_text().strip())
    with Client(broker.url, token=session.session_token) as client:
        yield client


def test_a_member_taken_out_of_a_group_loses_ssh_within_two_seconds(world: World, admin: Client) -> None:
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    admin.add_group("eng")
    admin.group_members("eng", add=[world.carol.email, world.bob.email])
    assert world.carol.run_in_space("true").returncode == 1  # not yet shared with the group
    world.alice.ok("spaces", "share", "demo", "--group", "eng")
    eventually(lambda: world.carol.email in (world.box.snapshot_emails() or set()), "carol's key reaches the agent")
    assert world.carol.run_in_space("true").returncode == 0

    space_id = next(str(sp["id"]) for sp in world.alice.spaces() if sp["name"] == "demo")
    terminal_url = ep.websocket_url(world.broker.url, ep.SPACE_TERMINAL.format(space_id=space_id))

    async def scenario() -> None:
        headers = {"Authorization": f"Bearer {world.carol.session_token}"}
        async with connect(terminal_url, additional_headers=headers, open_timeout=20) as terminal:
            assert isinstance(tp.decode_server(await terminal.recv()), tp.Hello)
            with world.carol.session() as carols, world.bob.session() as bobs:
                started = asyncio.get_running_loop().time()
                group = await asyncio.to_thread(admin.group_members, "eng", remove=[world.carol.email, world.bob.email])
                assert group.members == []
                await asyncio.wait_for(terminal.wait_closed(), 2)
                assert terminal.close_code == CloseCode.REVOKED
                assert terminal.close_reason == 'You were taken out of the group "eng".'
                assert await asyncio.to_thread(carols.wait, 2) != 0
                assert asyncio.get_running_loop().time() - started < 2 + 1  # the API call's own time included
                assert carols.stderr is not None
                assert 'You were taken out of the group "eng".' in carols.stderr.read()
                assert bobs.poll() is None  # bob reaches demo directly as well: his session goes on

    asyncio.run(asyncio.wait_for(scenario(), 90))
    assert world.carol.email not in (world.box.snapshot_emails() or set())  # pushed with the change
    refused = world.carol.run_in_space("true")
    assert refused.returncode == 1
    assert "No Space you can see" in refused.stderr
    assert world.bob.run_in_space("true").returncode == 0


def test_admin_verbs_end_the_streams_of_those_they_take_access_from(world: World) -> None:
    """`pair-broker groups members remove` and `users remove` run in a process of their own,
    beside the serving broker: what they announce reaches its bus through the database
    (broker.outbox), so real open SSH sessions end within 2 s of the verb's return, each with
    its reason, as the API's changes end them."""
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    for args in (("groups", "add", "eng"), ("groups", "members", "add", "eng", world.carol.email)):
        done = world.broker.admin(*args)
        assert done.returncode == 0, done.stderr
    world.alice.ok("spaces", "share", "demo", "--group", "eng")
    eventually(lambda: world.carol.email in (world.box.snapshot_emails() or set()), "carol's key reaches the agent")

    def ended_within_two_seconds(session: subprocess.Popen[str], reason: str) -> None:
        assert session.wait(timeout=2) != 0
        assert session.stderr is not None
        assert reason in session.stderr.read()

    with world.carol.session() as carols, world.bob.session() as bobs, world.alice.session() as alices:
        done = world.broker.admin("groups", "members", "remove", "eng", world.carol.email)
        assert done.returncode == 0, done.stderr
        ended_within_two_seconds(carols, 'You were taken out of the group "eng".')
        assert bobs.poll() is None and alices.poll() is None

        done = world.broker.admin("users", "remove", world.bob.email)  # demo was shared with him
        assert done.returncode == 0, done.stderr
        ended_within_two_seconds(bobs, f"The account {world.bob.email} was removed.")
        assert alices.poll() is None

        done = world.broker.admin("users", "remove", world.alice.email)  # the owner: demo is deleted
        assert done.returncode == 0, done.stderr
        ended_within_two_seconds(alices, 'The Space "demo" was deleted.')


def test_a_real_bootstrap_past_the_compute_quota_waits_for_room(tmp_path: Path) -> None:
    with real_broker(tmp_path / "broker", env=BROKER_ENV) as broker:
        assert broker.admin("templates", "add", "t", "--compute", "3", "--storage", "1", "--default").returncode == 0
        alice = Person(broker, "alice", tmp_path)
        assert broker.admin("quota", "set", alice.email, "--compute", "2").returncode == 0
        alice.ok("spaces", "authorize", "--no-share", "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        with container(tmp_path / "space") as box:
            refused = alice.pair("spaces", "bootstrap", token, "--timeout", "5", env=box.env())
            assert refused.returncode == 1
            assert "error: You are using 0 of 2 compute units; template t needs 3." in refused.stderr
            assert alice.state("demo") == "created"
            assert broker.admin("quota", "set", alice.email, "--compute", "3").returncode == 0
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())  # the same token
            assert booted.returncode == 0, booted.stderr
            eventually(lambda: alice.state("demo") == "running", "the agent runs the Space")
            quota = alice.ok("quota")
            assert "compute units  3     3" in quota
