"""A Space's container for real: supervisord runs sshd (with `pair verify` as its
AuthorizedKeysCommand) and `pair agent`, against a real broker; people log in with the real ssh."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container, eventually
from tests.support.processes import clean_env, executable
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration


class Person:
    def __init__(self, broker: RealBroker, name: str, root: Path) -> None:
        self.email = f"{name}@example.com"
        self.dir = root / name
        self.dir.mkdir()
        self.env = clean_env(PAIR_CONFIG_DIR=str(self.dir / "config"), HOME=str(self.dir))
        key_file = broker.add_user(self.email, self.dir)
        self.ok("login", self.email, "--key-file", str(key_file), "--url", broker.url)
        self.key = self.dir / "id_ed25519"
        subprocess.run(
            [need_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", self.email, "-f", str(self.key)],
            check=True,
        )
        self.ok("keys", "add", str(self.key) + ".pub")

    def pair(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable("pair"), *args],
            cwd=self.dir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.pair(*args, env=env)
        assert result.returncode == 0, f"pair {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def state(self, name: str) -> str | None:
        spaces = json.loads(self.ok("spaces", "list", "--json"))
        return next((str(s["state"]) for s in spaces if s["name"] == name), None)


@dataclass
class World:
    broker: RealBroker
    alice: Person
    bob: Person
    carol: Person
    box: Container


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    env = {"PAIR_BROKER_AGENT_INTERVAL": "0.3", "PAIR_BROKER_SNAPSHOT_MAX_AGE": "3"}
    with real_broker(tmp_path / "broker", env=env) as broker:
        alice, bob, carol = (Person(broker, n, tmp_path) for n in ("alice", "bob", "carol"))
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        with container(tmp_path / "space") as box:
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())
            assert booted.returncode == 0, booted.stderr
            assert booted.stderr == ""  # supervisord was there, so the agent was (re)started quietly
            yield World(broker, alice, bob, carol, box)


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
