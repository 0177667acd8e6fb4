"""A Space's container for real: supervisord runs sshd (with `pair verify` as its
AuthorizedKeysCommand) and `pair agent`, against a real broker; people log in with the real ssh."""

from __future__ import annotations

import subprocess

import pytest

from tests.container.conftest import World
from tests.support.container import eventually

pytestmark = pytest.mark.integration


def test_owner_and_shared_user_get_in_and_nobody_else(world: World) -> None:
    box = world.box
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    eventually(lambda: box.snapshot_emails() == {world.alice.email, world.bob.email}, "the agent wrote the keys")

    for person in (world.alice, world.bob):
        result = box.ssh(person.key, "echo", "hello from", "$(whoami)")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello from root\n"

    refused = box.ssh(world.carol.key, "true")
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr
    log = box.log("pair-sshd.log")
    assert "pair verify: allow user=root" in log and f"{world.bob.email} (shared)" in log
    assert "pair verify: deny user=root" in log
    assert "AAAA" not in log  # fingerprints, never key material


def test_unshare_locks_the_person_out_once_the_agent_refreshes(world: World) -> None:
    box = world.box
    eventually(lambda: box.snapshot_emails() == {world.alice.email, world.bob.email}, "the agent wrote the keys")
    assert box.ssh(world.bob.key, "true").returncode == 0
    world.alice.ok("spaces", "unshare", "--space", "demo", world.bob.email)
    eventually(lambda: box.snapshot_emails() == {world.alice.email}, "the agent dropped bob's key")
    assert box.ssh(world.bob.key, "true").returncode == 255
    assert box.ssh(world.alice.key, "true").returncode == 0


def test_a_silent_broker_locks_everyone_out_after_the_snapshot_limit(world: World) -> None:
    box = world.box
    eventually(lambda: box.snapshot_emails(), "the agent wrote the keys")
    assert box.ssh(world.alice.key, "true").returncode == 0
    world.broker.proc.terminate()
    world.broker.proc.wait(10)
    eventually(lambda: box.ssh(world.alice.key, "true").returncode == 255, "the stale snapshot is refused", timeout=30)
    assert "snapshot is" in box.log("pair-sshd.log")


def test_supervisord_restarts_a_killed_agent_and_stopping_it_stops_the_space(world: World) -> None:
    box = world.box
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    pid = box.ctl("pid", "pair-agent").stdout.strip()
    subprocess.run(["kill", "-9", pid], check=True)
    eventually(lambda: box.ctl("pid", "pair-agent").stdout.strip() not in ("", "0", pid), "a new agent runs")
    eventually(lambda: "RUNNING" in box.ctl("status", "pair-agent").stdout, "supervisord reports it running")

    assert box.ctl("stop", "pair-agent").returncode == 0
    assert world.alice.state("demo") == "stopped"  # the agent said goodbye on SIGTERM
    assert box.ctl("start", "pair-agent").returncode == 0
    eventually(lambda: world.alice.state("demo") == "running", "the Space runs again")


def test_a_vanished_container_is_stopped_by_the_broker(world: World) -> None:
    box = world.box
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    pid = box.ctl("pid", "pair-agent").stdout.strip()
    assert box.ctl("stop", "sshd").returncode == 0
    subprocess.run(["kill", "-STOP", pid], check=True)  # frozen, like a paused container: no goodbye
    try:
        eventually(lambda: world.alice.state("demo") == "stopped", "the broker notices the silence", timeout=15)
    finally:
        subprocess.run(["kill", "-CONT", pid], check=True)


def test_rebootstrap_on_attach_is_quick_and_keeps_the_agent(world: World) -> None:
    box = world.box
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    pid = box.ctl("pid", "pair-agent").stdout.strip()
    again = world.alice.pair("spaces", "bootstrap", env=box.env())  # postAttachCommand
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith('This container is already the Space "demo"')
    assert box.ctl("pid", "pair-agent").stdout.strip() == pid  # running agent left alone
