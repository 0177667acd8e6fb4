"""Fixtures for the container side: a real broker, three people with SSH keys, and a Space's
container (supervisord, sshd, pair agent in a mount namespace) bootstrapped as alice's "demo",
shared with bob."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container
from tests.support.processes import clean_env, executable
from tests.support.tools import need_tool

BROKER_ENV = {"PAIR_BROKER_AGENT_INTERVAL": "0.5", "PAIR_BROKER_SNAPSHOT_MAX_AGE": "3"}


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

    def connect(self, *command: str, space: str = "demo") -> list[str]:
        """argv for `pair spaces connect` with this person's key, running `command` in the Space."""
        return [
            executable("pair"),
            "spaces",
            "connect",
            space,
            "--",
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            *command,
        ]

    def run_in_space(self, *command: str, space: str = "demo") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.connect(*command, space=space),
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    @contextmanager
    def session(self, space: str = "demo") -> Iterator[subprocess.Popen[str]]:
        """A long SSH session: it prints `in-session` once the shell runs, then waits."""
        with subprocess.Popen(
            self.connect("echo in-session && exec sleep 60", space=space),
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        ) as proc:
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line == "in-session\n", (line, proc.stderr.read() if proc.stderr else "")
                yield proc
            finally:
                proc.kill()

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
    with real_broker(tmp_path / "broker", env=BROKER_ENV) as broker:
        alice, bob, carol = (Person(broker, n, tmp_path) for n in ("alice", "bob", "carol"))
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        with container(tmp_path / "space") as box:
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())
            assert booted.returncode == 0, booted.stderr
            assert booted.stderr == ""  # supervisord was there, so the agent was (re)started quietly
            yield World(broker, alice, bob, carol, box)
