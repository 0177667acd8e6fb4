"""Connecting through the broker's relay for real: `pair spaces connect` runs the real ssh with
`pair spaces proxy` as ProxyCommand; the agent dials the container's sshd; revocation, down/up,
restarts and failures end or refuse sessions with a clear word."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.container.conftest import BROKER_ENV, World
from tests.support.broker import real_broker
from tests.support.container import eventually
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration


def running(world: World) -> None:
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")


def test_owner_and_teammate_connect_and_others_cannot(world: World) -> None:
    running(world)
    for person in (world.alice, world.bob):
        result = person.run_in_space("echo", "hello from", "$(hostname)")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("hello from ")
    refused = world.carol.run_in_space("true")
    assert refused.returncode == 1
    assert "error: No Space you can see is called 'demo'." in refused.stderr


def test_sessions_are_listed_and_unshare_ends_them_within_two_seconds(world: World) -> None:
    running(world)
    with world.bob.session() as session:
        listing = world.alice.ok("spaces", "sessions", "demo")
        assert world.bob.email in listing and "127.0.0.1" in listing
        [row] = json.loads(world.alice.ok("spaces", "sessions", "demo", "--json"))
        assert row["email"] == world.bob.email and row["from"].startswith("127.0.0.1:")
        assert row["id"].startswith("tun_") and row["since"].endswith("Z")
        assert isinstance(row["bytes_in"], int) and isinstance(row["bytes_out"], int)
        world.alice.ok("spaces", "unshare", "--space", "demo", world.bob.email)
        assert session.wait(timeout=2) != 0
        assert session.stderr is not None
        assert f"{world.alice.email} stopped sharing" in session.stderr.read()
    again = world.bob.run_in_space("true")
    assert again.returncode == 1
    assert "No Space you can see" in again.stderr


def test_kick_ends_a_session_but_the_person_may_come_back(world: World) -> None:
    running(world)
    with world.bob.session() as session:
        assert world.alice.ok("spaces", "kick", "demo", world.bob.email).startswith(f"Ended {world.bob.email}'s")
        assert session.wait(timeout=2) != 0
    assert world.bob.run_in_space("true").returncode == 0
    assert "Nobody is connected" in world.alice.ok("spaces", "sessions", "demo")
    assert json.loads(world.alice.ok("spaces", "sessions", "demo", "--json")) == []


def test_down_ends_sessions_and_up_brings_ssh_back(world: World) -> None:
    running(world)
    with world.bob.session() as session:
        out = world.alice.ok("spaces", "down", "--space", "demo")
        assert out.endswith(" is stopped\n")
        assert session.wait(timeout=2) != 0
    assert "STOPPED" in world.box.ctl("status", "sshd").stdout  # the agent stopped sshd
    refused = world.bob.run_in_space("true")
    assert refused.returncode == 1
    assert 'The Space "demo" is not running (stopped).' in refused.stderr
    assert world.alice.ok("spaces", "up", "--space", "demo").endswith(" is running\n")
    assert world.bob.run_in_space("true").returncode == 0


def test_up_says_plainly_when_the_container_is_not_running(world: World) -> None:
    running(world)
    assert world.box.ctl("stop", "pair-agent").returncode == 0
    result = world.alice.pair("spaces", "up", "--space", "demo")
    assert result.returncode == 1
    assert 'error: The container of "demo" is not running' in result.stderr


def test_the_agent_reconnects_by_itself_after_a_broker_restart(world: World, tmp_path: Path) -> None:
    running(world)
    port = world.broker.url.rsplit(":", 1)[1]
    world.broker.proc.terminate()
    world.broker.proc.wait(10)
    with real_broker(world.broker.data_dir, "--port", port, env=BROKER_ENV):
        eventually(lambda: world.alice.pair("spaces", "list").returncode == 0, "the broker answers")
        eventually(lambda: world.bob.run_in_space("true").returncode == 0, "bob can connect again", timeout=30)


def test_a_killed_agent_ends_the_session_with_a_clear_error(world: World) -> None:
    running(world)
    with world.bob.session() as session:
        pid = world.box.ctl("pid", "pair-agent").stdout.strip()
        subprocess.run(["kill", "-9", pid], check=True)
        assert session.wait(timeout=10) != 0
        assert session.stderr is not None
        assert "The connection to the container was lost" in session.stderr.read()


def test_a_changed_host_key_is_refused_with_a_clear_message(world: World) -> None:
    running(world)
    key = world.box.home / "sshd" / "ssh_host_ed25519_key"
    key.unlink()
    Path(f"{key}.pub").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert world.box.ctl("restart", "sshd").returncode == 0
    result = world.bob.run_in_space("true")
    assert result.returncode == 1
    assert 'error: The Space "demo" answered with a different SSH host key' in result.stderr


def test_no_ssh_key_registered(world: World, tmp_path: Path) -> None:
    running(world)
    for line in world.bob.ok("keys", "list").splitlines():
        world.bob.ok("keys", "remove", line.split()[1])
    result = world.bob.run_in_space("true")
    assert result.returncode == 1
    assert "error: You have no SSH key registered" in result.stderr


def test_scp_50_mb_both_ways_through_the_ssh_config_alias(world: World, tmp_path: Path) -> None:
    running(world)
    bob = world.bob
    out = bob.ok("spaces", "ssh-config")
    assert "demo.pair" in out
    ssh_config = bob.dir / ".ssh" / "config"  # ssh reads the real home's config; point it at bob's
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(50 * 1024 * 1024))
    remote = world.box.home / "received.bin"  # the container's filesystem is this machine's, here
    scp = [
        need_tool("scp"),
        "-q",
        "-F",
        str(ssh_config),
        "-i",
        str(bob.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
    ]
    up = subprocess.run(
        [*scp, str(payload), f"demo.pair:{remote}"],
        env=bob.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    back = tmp_path / "back.bin"
    down = subprocess.run(
        [*scp, f"demo.pair:{remote}", str(back)], env=bob.env, capture_output=True, text=True, timeout=120, check=False
    )
    assert down.returncode == 0, down.stderr
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    assert hashlib.sha256(remote.read_bytes()).hexdigest() == digest
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
