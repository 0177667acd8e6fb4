"""Shared fixtures: an in-process broker with a fake clock, people who use the CLI against it,
a real broker process for integration tests, and a real PostgreSQL server."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import InProcessBroker, RealBroker, in_process_broker, real_broker
from tests.support.cli import Person, connect_cli
from tests.support.postgres import PostgresServer, postgres_server

# A suite started in the background by a shell without job control (`make test &`, nohup, some CI
# runners) inherits SIGINT ignored, and so would every program the tests start: ssh and Python then
# never see the Ctrl-C the tests send them. A handler, unlike an ignore, resets to the default on exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessBroker]:
    with in_process_broker(tmp_path / "broker-data") as b:
        connect_cli(monkeypatch, b)
        yield b


@pytest.fixture
def people(broker: InProcessBroker, tmp_path: Path) -> dict[str, Person]:
    """alice (admin), bob and carol, each logged in from their own config dir."""
    out = {}
    for name in ("alice", "bob", "carol"):
        email = f"{name}@example.com"
        broker.add_user(email, admin=name == "alice")
        person = Person(broker, email, tmp_path / name)
        person.login()
        out[name] = person
    return out


@pytest.fixture
def live_broker(tmp_path: Path) -> Iterator[RealBroker]:
    with real_broker(tmp_path / "broker-data") as b:
        yield b


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session, started on first use; tests take fresh
    databases from it (`create_database()`)."""
    with postgres_server() as server:
        yield server
