"""The broker checks what a container says about itself (pair.api.grammar) at bootstrap, check-in
and heartbeat, and refuses facts that do not fit with a 422 naming the fact: a hostile container
cannot put lines into teammates' ssh configs and known_hosts, or control sequences on an
operator's terminal."""

from __future__ import annotations

import base64
import json

import msgspec
import pytest

from pair.api.client import Client
from pair.api.errors import ApiError
from pair.api.models import ContainerFacts, Heartbeat, HeartbeatMessage
from tests.support.broker import InProcessBroker
from tests.support.cli import Person

KEY = "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()
GOOD = ContainerFacts(hostname="box", login_user="dev", host_keys=[KEY], pair_version="0.1.0")
# Each refused in its fact type's words (pair.api.models.FACT_GRAMMAR, as pair.api.fields says a
# request field's), the value escaped and cut; a key of the right shape that is no key, by pair.sshkeys.
BAD = [
    (ContainerFacts(host_keys=[f"{KEY}\n@revoked * {KEY}"]), "…' is not an SSH host key."),
    (ContainerFacts(host_keys=[f"{KEY} root@box"]), "…' is not an SSH host key."),
    (ContainerFacts(login_user="dev\nHost *"), "'dev\\nHost *' is not a POSIX user name."),
    (ContainerFacts(hostname="h\x1b]0;TITLE\x07\x1b[31mRED"), "'h\\x1b]0;TITLE\\x07\\x1b[31mRED' is not a host name."),
    (ContainerFacts(host_keys=["ssh-ed25519 AAAA"]), "The container reported a bad SSH host key: "),
]
IDS = ["revoked-marker", "comment", "login-user", "hostname", "not-a-key"]


@pytest.fixture
def token(people: dict[str, Person]) -> str:
    result = people["alice"].pair("spaces", "authorize", "--no-share", "--name", "demo")
    assert result.ok, result.err
    return (people["alice"].cwd / "SPACE_ID.txt").read_text().strip()


def facts_seen_by(person: Person) -> dict[str, object]:
    rows = json.loads(person.pair("spaces", "list", "--json").out)
    return {k: rows[0][k] for k in ("state", "cpu")}


@pytest.mark.parametrize(("facts", "why"), BAD, ids=IDS)
def test_bootstrap_refuses_facts_that_do_not_fit(
    broker: InProcessBroker, token: str, facts: ContainerFacts, why: str
) -> None:
    with Client(broker.url) as client, pytest.raises(ApiError) as caught:
        client.bootstrap(token, "instance-1", facts)
    assert caught.value.status == 422
    assert caught.value.code == "invalid_facts"
    assert why in caught.value.message
    assert caught.value.detail and "regex" not in caught.value.detail  # the fact type's rule, in words
    with Client(broker.url) as client:  # the token is not spent by a refused bootstrap
        assert client.bootstrap(token, "instance-1", GOOD).agent_credential


@pytest.mark.parametrize(("facts", "why"), BAD, ids=IDS)
def test_check_in_and_heartbeat_refuse_them_too_and_keep_the_good_facts(
    broker: InProcessBroker, people: dict[str, Person], token: str, facts: ContainerFacts, why: str
) -> None:
    with Client(broker.url) as client:
        credential = client.bootstrap(token, "instance-1", GOOD).agent_credential
    with Client(broker.url, token=credential) as agent:
        for call in (
            lambda: agent.checkin("instance-1", facts),
            lambda: agent.heartbeat(Heartbeat(instance_id="instance-1", facts=facts)),
        ):
            with pytest.raises(ApiError) as caught:
                call()
            assert (caught.value.status, caught.value.code) == (422, "invalid_facts")
            assert why in caught.value.message
    (row,) = json.loads(people["alice"].pair("spaces", "list", "--json").out)
    space = broker.run(broker.ctx.store.space(row["id"]))
    assert space is not None and space.facts is not None
    assert msgspec.json.decode(space.facts, type=ContainerFacts) == GOOD


def test_the_control_channel_closes_on_bad_facts_with_the_reason(broker: InProcessBroker, token: str) -> None:
    with Client(broker.url) as client:
        credential = client.bootstrap(token, "instance-1", GOOD).agent_credential
    beat = HeartbeatMessage(heartbeat=Heartbeat(instance_id="instance-1", facts=BAD[0][0]))
    with broker.http.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {credential}"}
    ) as ws:
        ws.send_text(msgspec.json.encode(beat).decode())
        closed = ws.receive()
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 4422
    assert closed["reason"].endswith("…' is not an SSH host key.")
