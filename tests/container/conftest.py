"""Fixtures for the container side: a real broker, three people with SSH keys, and a Space's
container (supervisord, sshd, pair agent in a mount namespace) bootstrapped as alice's "demo",
shared with bob."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container
from tests.support.people import Person

BROKER_ENV = {"PAIR_BROKER_AGENT_INTERVAL": "0.5", "PAIR_BROKER_SNAPSHOT_MAX_AGE": "3"}


@dataclass
class World:
    broker: RealBroker
    alice: Person
    bob: Person
    carol: Person
    box: Container


@pytest.fixture
def broker_env() -> dict[str, str]:
    """The broker's settings for `world`; a test module may override this fixture."""
    return BROKER_ENV


@pytest.fixture
def world(tmp_path: Path, broker_env: dict[str, str]) -> Iterator[World]:
    with real_broker(tmp_path / "broker", env=broker_env) as broker:
        alice, bob, carol = (Person(broker, n, tmp_path) for n in ("alice", "bob", "carol"))
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        with container(tmp_path / "space") as box:
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())
            assert booted.returncode == 0, booted.stderr
            assert booted.stderr == ""  # supervisord was there, so the agent was (re)started quietly
            yield World(broker, alice, bob, carol, box)
