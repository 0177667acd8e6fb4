"""A Space's container behind TLS for real: Debian's nginx terminates TLS (a test CA) in front of
a real broker; the container (supervisord, sshd, the real `pair agent`) bootstraps over https,
heartbeats over wss, and a teammate's `pair spaces connect` goes through wss at both ends. Without
the CA, bootstrap and the agent refuse the broker with one sentence naming SSL_CERT_FILE."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.container.conftest import BROKER_ENV
from tests.support.broker import RealBroker, real_broker
from tests.support.container import Container, container, eventually, free_port
from tests.support.people import Person
from tests.support.processes import Output, executable, stop
from tests.support.tls import test_ca, tls_proxy

pytestmark = pytest.mark.integration

UNTRUSTED = "The broker's TLS certificate is not trusted by this machine: unable to get local issuer certificate"


@dataclass
class TlsWorld:
    broker: RealBroker  # url: nginx's https:// one
    alice: Person
    bob: Person
    box: Container
    root: Path


@pytest.fixture
def tls_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsWorld]:
    ca = test_ca(tmp_path / "ca")
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_file))  # people, supervisord and the agent inherit it
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    with (
        real_broker(tmp_path / "broker", "--public-url", url, env=BROKER_ENV) as plain,
        tls_proxy(tmp_path / "nginx", [plain.url.removeprefix("http://")], ca, port=port) as proxy,
    ):
        broker = dataclasses.replace(plain, url=proxy.url)
        alice, bob = (Person(broker, n, tmp_path) for n in ("alice", "bob"))
        alice.ok("spaces", "authorize", "--user", bob.email, "--name", "demo")
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        with container(tmp_path / "space") as box:
            booted = alice.pair("spaces", "bootstrap", token, env=box.env())
            assert booted.returncode == 0, booted.stderr
            yield TlsWorld(broker, alice, bob, box, tmp_path)


def untrusted(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "SSL_CERT_FILE"}


def test_bootstrap_heartbeats_and_connect_go_through_tls(tls_world: TlsWorld) -> None:
    world = tls_world
    eventually(lambda: world.alice.state("demo") == "running", "the agent heartbeats over wss")
    result = world.bob.run_in_space("echo", "over", "tls")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "over tls\n"


def test_without_the_ca_bootstrap_and_the_agent_refuse_the_broker_plainly(tls_world: TlsWorld) -> None:
    world = tls_world
    world.alice.ok("spaces", "authorize", "--no-share", "--name", "other")
    token = (world.alice.dir / "SPACE_ID.txt").read_text().strip()
    elsewhere = world.root / "elsewhere"
    refused = subprocess.run(
        [executable("pair"), "spaces", "bootstrap", token],
        env=untrusted({**world.alice.env, "PAIR_HOME": str(elsewhere)}),
        capture_output=True,
        text=True,
        timeout=60,  # refused at once: a certificate is not a broker that is away, so it is not retried
        check=False,
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"error: {UNTRUSTED} (127.0.0.1).\nhint: If the broker's"), refused.stderr
    assert "SSL_CERT_FILE" in refused.stderr and "Traceback" not in refused.stderr

    # An agent of the bootstrapped container, started without the CA: it says why, and keeps trying.
    agent = subprocess.Popen(
        [executable("pair"), "agent"],
        env=untrusted(world.box.env()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(agent)
    try:
        line = output.wait_for(r"pair agent: .*TLS certificate")
        assert f"{UNTRUSTED} (127.0.0.1). If the broker's certificate comes from your own CA" in line.string
        output.wait_for(r"Retrying in")
    finally:
        stop(agent)
        output.finish()
        assert agent.stdout is not None
        agent.stdout.close()
    assert "Traceback" not in output.text()
