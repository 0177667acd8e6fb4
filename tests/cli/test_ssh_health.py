"""The agent's word about sshd, as people read it: `pair spaces list` (table and --json) and
`pair spaces connect`'s refusal, against the in-process broker fed real heartbeats."""

from __future__ import annotations

import msgspec
import pytest
from starlette.testclient import TestClient

from pair.api.client import Client
from pair.api.errors import ApiError, PairError
from pair.api.models import ContainerFacts, Heartbeat, SshHealth
from tests.cli.helpers import assert_error, authorize, list_json
from tests.support.broker import InProcessBroker
from tests.support.cli import Person

PORT_TAKEN = SshHealth(
    serving=False,
    reason="sshd could not start (supervisord gave up): Bind to port 2222 on 0.0.0.0 failed: "
    "Address already in use. Cannot bind any address.",
    supervisor_state="FATAL",
)


@pytest.fixture
def agent(broker: InProcessBroker, people: dict[str, Person]) -> Client:
    """The container of alice's "demo" (shared with bob), bootstrapped: an API client with its credential."""
    _, token = authorize(people["alice"], "--user", "bob@example.com", "--name", "demo")
    container = Client(broker.url, http=TestClient(broker.http.app, base_url=broker.url))
    registration = container.bootstrap(token, "instance-1", ContainerFacts(hostname="box", host_keys=[]))
    return Client(
        broker.url, token=registration.agent_credential, http=TestClient(broker.http.app, base_url=broker.url)
    )


def beat(agent: Client, ssh: SshHealth | None) -> None:
    agent.heartbeat(Heartbeat(instance_id="instance-1", state="running", ssh=ssh))


def test_a_failing_sshd_shows_in_list_and_json_and_connect_says_why_at_once(
    agent: Client, people: dict[str, Person]
) -> None:
    alice, bob = people["alice"], people["bob"]
    beat(agent, PORT_TAKEN)

    listed = alice.pair("spaces", "list")
    assert listed.ok, listed.err
    _, row, note = listed.out.splitlines()
    assert row.split()[3:5] == ["starting", "(ssh"]  # the state column: "starting (ssh down)"
    assert "starting (ssh down)" in row
    assert note == f"demo: SSH is not being served: {PORT_TAKEN.reason}"
    (data,) = list_json(bob)
    assert data["state"] == "starting"
    assert data["ssh"] == {"serving": False, "reason": PORT_TAKEN.reason, "supervisor_state": "FATAL"}

    refused = bob.pair("spaces", "connect", "demo")
    assert_error(
        refused,
        f'SSH is not being served in "demo": {PORT_TAKEN.reason}',
        hint="Ask its owner (alice@example.com) to fix it",
    )
    mine = alice.pair("spaces", "connect", "demo")
    assert_error(mine, 'SSH is not being served in "demo"', hint="`pair spaces up --space demo` starts sshd again")


def test_once_sshd_serves_the_space_is_running_with_nothing_to_explain(
    agent: Client, people: dict[str, Person]
) -> None:
    beat(agent, PORT_TAKEN)
    beat(agent, SshHealth(serving=True, supervisor_state="RUNNING"))
    listed = people["bob"].pair("spaces", "list")
    assert listed.ok, listed.err
    assert len(listed.out.splitlines()) == 2  # no note line
    (data,) = list_json(people["bob"])
    assert (data["state"], data["ssh"]) == ("running", {"serving": True, "reason": "", "supervisor_state": "RUNNING"})


def test_an_agent_that_does_not_report_ssh_health_still_reads_as_running(
    agent: Client, people: dict[str, Person]
) -> None:
    beat(agent, None)  # an agent older than the field
    (data,) = list_json(people["alice"])
    assert (data["state"], data["ssh"]) == ("running", None)


@pytest.mark.parametrize(
    "reason",
    [
        "sshd exited\n@revoked * ssh-ed25519 AAAA",
        "\x1b]0;owned\x07",
        "x" * 301,
        "bidi \u202e txt",
        "trailing newline\n",
    ],
)
def test_a_reason_that_is_not_one_line_of_text_is_refused_on_entry(
    broker: InProcessBroker, agent: Client, people: dict[str, Person], reason: str
) -> None:
    health = SshHealth(serving=False, reason=reason, supervisor_state="FATAL")
    with pytest.raises(PairError) as refused:  # the agent's client: nothing is sent
        beat(agent, health)
    assert not isinstance(refused.value, ApiError) and "is not a short line of text" in refused.value.message
    sent = broker.http.post(  # the broker, sent it anyway
        "/api/v1/agent/heartbeat",
        content=msgspec.json.encode(Heartbeat(instance_id="instance-1", state="running", ssh=health)),
        headers=agent.bearer(),
    )
    assert sent.status_code == 422, sent.text
    assert sent.json()["message"] == refused.value.message
    (data,) = list_json(people["alice"])
    assert data["ssh"] is None  # nothing of it was kept
