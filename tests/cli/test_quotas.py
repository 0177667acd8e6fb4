"""Templates and quotas through the CLI (issue 16; seed 001's example): `pair-broker templates`,
`pair-broker quota set`, `pair spaces authorize --template`, `pair quota`, and the refusals where
usage would grow (a new Space, a bootstrap, an agent reporting a stopped Space running again).
The containers here are fake agents at the HTTP level; tests/integration/test_quota_race.py races
real requests against a real broker process."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from broker import agents, metrics
from pair.api.client import Client
from pair.api.errors import ApiError
from pair.api.models import ContainerFacts, Heartbeat
from tests.cli.helpers import admin, assert_error, authorize, client_as, list_json, ok
from tests.support.broker import InProcessBroker
from tests.support.cli import Person

FACTS = ContainerFacts(hostname="box")


def container_client(broker: InProcessBroker, credential: str | None = None) -> Client:
    return Client(broker.url, token=credential, http=TestClient(broker.http.app, base_url=broker.url))


def bootstrap(broker: InProcessBroker, token: str, instance: str) -> str:
    with container_client(broker) as c:
        return c.bootstrap(token, instance, FACTS).agent_credential


def refused_bootstrap(broker: InProcessBroker, token: str, instance: str) -> ApiError:
    with container_client(broker) as c, pytest.raises(ApiError) as refused:
        c.bootstrap(token, instance, FACTS)
    return refused.value


def states(person: Person) -> dict[str, str]:
    return {row["name"]: row["state"] for row in list_json(person)}


@pytest.fixture
def seed(broker: InProcessBroker) -> None:
    """Seed 001's templates: A uses 3 compute units, B 2; each 1 storage unit."""
    ok(admin(broker, "templates", "add", "a", "--compute", "3", "--storage", "1", "--default"))
    ok(admin(broker, "templates", "add", "b", "--compute", "2", "--storage", "1", "--description", "smaller"))


def test_the_seeds_example_three_a_run_and_a_fourth_waits_for_room(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    alice = people["alice"]
    assert ok(admin(broker, "quota", "set", "alice@example.com", "--compute", "10")) == (
        "alice@example.com: spaces unlimited, compute 10, storage unlimited.\n"
    )
    tokens = [authorize(alice, "--no-share", "--name", f"a{i}", "--template", "a")[1] for i in range(5)]
    for i in range(3):
        bootstrap(broker, tokens[i], f"box-{i}")

    refusal = refused_bootstrap(broker, tokens[3], "box-3")
    assert (refusal.status, refusal.code) == (403, "quota_exceeded")
    assert refusal.message == "You are using 9 of 10 compute units; template a needs 3."
    assert "pair spaces down" in refusal.detail
    assert states(alice) == {"a0": "starting", "a1": "starting", "a2": "starting", "a3": "created", "a4": "created"}

    # Stopping one makes room: the fourth runs with the same token (the refusal did not spend it).
    said = ok(alice.pair("spaces", "down", "--space", "a0"))
    assert said.startswith('Space "a0" (sp_') and said.endswith(") is stopped\n"), said  # named as typed
    bootstrap(broker, tokens[3], "box-3")
    assert states(alice)["a3"] == "starting"
    assert refused_bootstrap(broker, tokens[4], "box-4").message.startswith("You are using 9 of 10 compute units")
    # So does deleting one.
    ok(alice.pair("spaces", "delete", "a1", "--yes"))
    bootstrap(broker, tokens[4], "box-4")

    quota = alice.pair("quota")
    assert quota.ok, quota.err
    assert [line.split() for line in quota.out.splitlines()] == [
        ["resource", "used", "limit", "from"],
        ["Spaces", "4", "unlimited", "nobody", "sets", "it"],
        ["compute", "units", "9", "10", "10", "(own)"],
        ["storage", "units", "4", "unlimited", "nobody", "sets", "it"],
    ]
    assert [row["template"] for row in list_json(alice)] == ["a", "a", "a", "a"]


def test_one_a_and_three_b_fit_ten_units_or_five_b(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    alice, bob = people["alice"], people["bob"]
    ok(admin(broker, "quota", "set", "alice@example.com", "--compute", "10"))
    ok(admin(broker, "quota", "set", "bob@example.com", "--compute", "10"))
    mixed = [("a", "a0"), ("b", "b0"), ("b", "b1"), ("b", "b2")]
    for i, (template, name) in enumerate(mixed):
        _, token = authorize(alice, "--no-share", "--name", name, "--template", template)
        bootstrap(broker, token, f"alice-{i}")
    _, extra = authorize(alice, "--no-share", "--name", "b3", "--template", "b")
    assert refused_bootstrap(broker, extra, "alice-x").message == (
        "You are using 9 of 10 compute units; template b needs 2."
    )
    for i in range(5):
        _, token = authorize(bob, "--no-share", "--name", f"b{i}", "--template", "b")
        bootstrap(broker, token, f"bob-{i}")
    assert set(states(bob).values()) == {"starting"}


def test_group_quotas_add_to_the_users_and_two_groups_add_up(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    alice, bob = people["alice"], people["bob"]
    ok(admin(broker, "quota", "set", "alice@example.com", "--compute", "4"))
    ok(admin(broker, "groups", "add", "eng"))
    ok(admin(broker, "groups", "add", "ops"))
    ok(admin(broker, "quota", "set", "--group", "eng", "--compute", "6"))
    ok(admin(broker, "quota", "set", "--group", "ops", "--compute", "5"))
    ok(admin(broker, "groups", "members", "add", "eng", "alice@example.com", "bob@example.com"))
    ok(admin(broker, "groups", "members", "add", "ops", "bob@example.com"))

    # alice: 4 + 6 = 10, so three A and no fourth
    tokens = [authorize(alice, "--no-share", "--name", f"a{i}")[1] for i in range(4)]  # the default: a
    for i in range(3):
        bootstrap(broker, tokens[i], f"alice-{i}")
    assert refused_bootstrap(broker, tokens[3], "alice-3").message == (
        "You are using 9 of 10 compute units; template a needs 3."
    )
    # bob: no own limit, groups 6 + 5 = 11
    tokens = [authorize(bob, "--no-share", "--name", f"b{i}")[1] for i in range(4)]
    for i in range(3):
        bootstrap(broker, tokens[i], f"bob-{i}")
    assert refused_bootstrap(broker, tokens[3], "bob-3").message == (
        "You are using 9 of 11 compute units; template a needs 3."
    )
    shown = json.loads(ok(bob.pair("quota", "--json")))
    compute = next(line for line in shown["lines"] if line["resource"] == "compute")
    assert compute == {
        "resource": "compute",
        "used": 9,
        "limit": 11,
        "sources": [{"kind": "group", "name": "eng", "limit": 6}, {"kind": "group", "name": "ops", "limit": 5}],
    }
    # unsetting the own limit leaves the group's
    ok(admin(broker, "quota", "set", "alice@example.com", "--compute", "unlimited"))
    assert "6 (group eng)" in ok(alice.pair("quota"))


def test_new_spaces_are_refused_past_the_space_and_storage_limits(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    alice = people["alice"]
    ok(admin(broker, "quota", "set", "alice@example.com", "--spaces", "2", "--storage", "4"))
    ok(admin(broker, "templates", "add", "big", "--compute", "1", "--storage", "4"))
    authorize(alice, "--no-share", "--name", "one")  # 1 storage unit
    assert_error(
        alice.pair("spaces", "authorize", "--no-share", "--name", "two", "--template", "big"),
        "You are using 1 of 4 storage units; template big needs 4.",
    )
    authorize(alice, "--no-share", "--name", "two")
    assert_error(
        alice.pair("spaces", "authorize", "--no-share", "--name", "three"),
        "You are using 2 of 2 Spaces; a new Space needs 1.",
        hint="pair quota",
    )
    assert sorted(states(alice)) == ["one", "two"]  # nothing half-made


def test_containers_a_space_key_registers_get_the_default_template_within_the_quota(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    """A Space key makes Spaces as authorize does: the default template, the owner's Space and
    storage limits for a new one, then its compute units as a bootstrap; a refusal makes nothing
    and leaves the key unused."""
    alice = people["alice"]
    ok(admin(broker, "quota", "set", "alice@example.com", "--spaces", "3", "--compute", "6"))
    with client_as(broker, alice) as api:
        key = api.create_space_key("ci", share_with=[], expires_in_seconds=None).space_key
    authorize(alice, "--no-share", "--name", "by_hand")  # one Space, not running

    def register(container: str) -> None:
        with container_client(broker) as c:
            c.bootstrap_with_key(key, container, f"inst-{container}", FACTS)

    register("box-1")
    register("box-2")  # 6 of 6 compute units now
    assert {(r["name"], r["template"], r["state"]) for r in list_json(alice)} == {
        ("by_hand", "a", "created"),
        ("box-1", "a", "starting"),
        ("box-2", "a", "starting"),
    }
    with pytest.raises(ApiError) as refused:
        register("box-3")  # a fourth Space: past the limit of 3
    assert (refused.value.code, refused.value.message) == (
        "quota_exceeded",
        "You are using 3 of 3 Spaces; a new Space needs 1.",
    )
    ok(alice.pair("spaces", "delete", "by_hand", "--yes"))
    with pytest.raises(ApiError) as refused:
        register("box-3")  # room for the Space, none for its compute units
    assert refused.value.message == "You are using 6 of 6 compute units; template a needs 3."
    assert sorted(r["name"] for r in list_json(alice)) == ["box-1", "box-2"]  # nothing half-made
    with client_as(broker, alice) as api:
        [listed] = api.space_keys()
    assert listed.uses == 2  # the refusals did not count as uses


@pytest.fixture
def metrics_url() -> Iterator[str]:
    """The broker's /metrics listener (`--metrics-address 127.0.0.1:0`), in this process."""
    server, port = metrics.serve("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()


def refusals(url: str) -> dict[str, float]:
    """`pair_broker_quota_refusals_total` by its `quota` label, as a scrape reads it."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        sample.labels["quota"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pair_broker_quota_refusals_total"
    }


def test_each_quota_refusal_counts_once_in_metrics_by_the_resource_refused(
    broker: InProcessBroker, people: dict[str, Person], seed: None, metrics_url: str
) -> None:
    alice = people["alice"]
    before = refusals(metrics_url)
    assert set(before) == {"spaces", "compute", "storage"}  # every series there from the start
    ok(admin(broker, "quota", "set", "alice@example.com", "--spaces", "2", "--compute", "3", "--storage", "5"))
    ok(admin(broker, "templates", "add", "big", "--compute", "1", "--storage", "5"))
    _, first = authorize(alice, "--no-share", "--name", "one")  # a: 3 compute, 1 storage
    assert_error(alice.pair("spaces", "authorize", "--no-share", "--template", "big"), "storage units")
    _, second = authorize(alice, "--no-share", "--name", "two")
    assert_error(alice.pair("spaces", "authorize", "--no-share"), "of 2 Spaces")
    bootstrap(broker, first, "box-1")
    assert refused_bootstrap(broker, second, "box-2").code == "quota_exceeded"
    assert refused_bootstrap(broker, second, "box-2").code == "quota_exceeded"
    ok(alice.pair("spaces", "down", "--space", "one"))
    bootstrap(broker, second, "box-2")  # room again: no refusal counted
    after = refusals(metrics_url)
    assert {k: after[k] - before[k] for k in before} == {"spaces": 1, "compute": 2, "storage": 1}


def test_a_stopped_space_whose_agent_comes_back_past_the_quota_is_told_to_stop(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    alice = people["alice"]
    ok(admin(broker, "quota", "set", "alice@example.com", "--compute", "6"))
    tokens = [authorize(alice, "--no-share", "--name", f"a{i}")[1] for i in range(3)]
    credentials = [bootstrap(broker, tokens[i], f"box-{i}") for i in range(2)]
    # box-0's container goes away; the sweep stops its Space once box-1 alone keeps beating
    broker.clock.advance(3 * broker.ctx.settings.agent_interval + 2)
    with container_client(broker, credentials[1]) as box1:
        box1.heartbeat(Heartbeat(instance_id="box-1"))
    broker.run(agents.stop_silent(broker.ctx))
    assert states(alice)["a0"] == "stopped"
    bootstrap(broker, tokens[2], "box-2")  # the room it left

    with container_client(broker, credentials[0]) as box0:  # box-0 is back, but there is no room
        reply = box0.heartbeat(Heartbeat(instance_id="box-0"))
    assert reply.desired_state == "stopped"
    assert states(alice)["a0"] == "stopped"
    audit = ok(admin(broker, "audit", "--action", "space.quota_stop"))
    assert "You are using 6 of 6 compute units; template a needs 3." in audit


def test_templates_are_named_checked_and_listed(broker: InProcessBroker, people: dict[str, Person], seed: None) -> None:
    alice = people["alice"]
    assert_error(
        alice.pair("spaces", "authorize", "--no-share", "--template", "huge"),
        "There is no template named 'huge' on this broker.",
        hint="a (default), b",
    )
    listed = ok(admin(broker, "templates", "list")).splitlines()
    assert [line.split()[:4] for line in listed] == [
        ["NAME", "COMPUTE", "STORAGE", "DEFAULT"],
        ["a", "3", "1", "yes"],
        ["b", "2", "1", "smaller"],
    ]
    ok(admin(broker, "templates", "set-default", "b"))
    authorize(alice, "--no-share", "--name", "x")
    ok(admin(broker, "templates", "remove", "b"))
    assert list_json(alice)[0]["template"] == "b"  # a Space keeps its template's name and units
    ok(admin(broker, "templates", "remove", "a"))
    authorize(alice, "--no-share", "--name", "y")  # no templates left: a Space without one
    assert {r["name"]: r["template"] for r in list_json(alice)} == {"x": "b", "y": None}
    bad = admin(broker, "templates", "add", "Bad Name", "--compute", "1", "--storage", "1")
    assert bad.code == 1
    assert "not a valid template name" in bad.err
    none_default = admin(broker, "templates", "add", "c", "--compute", "1", "--storage", "1")
    assert none_default.ok
    assert_error(
        alice.pair("spaces", "authorize", "--no-share", "--name", "z"),
        "This broker has no default template",
        hint="--template",
    )


def test_the_audit_log_names_the_template_each_space_is_made_from(
    broker: InProcessBroker, people: dict[str, Person], seed: None
) -> None:
    """Reproduction: `space.create` rows named only the Space, so an operator could not tell what
    it costs; now its template follows the name, as in `space_key.create` rows (authorize, the web
    page's form through it, an approved access request, a Space key's registration)."""
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "small", "--template", "b")
    authorize(alice, "--no-share", "--name", "plain")  # the default template, a
    asked = broker.http.post("/api/v1/access-requests", json={"email": "new@example.com", "message": "hi"})
    assert asked.status_code < 300, asked.text
    ok(admin(broker, "requests", "approve", "new@example.com"))
    rows = json.loads(ok(admin(broker, "audit", "--action", "space.create", "--json")))
    details = sorted(row["detail"] for row in rows)
    (approved,) = [d for d in details if not d.startswith(("small", "plain"))]
    assert details == sorted(["small, template b", "plain, template a", approved])
    assert approved.endswith(", template a")  # an approved request's Space: the default template
    shown = ok(admin(broker, "audit", "--action", "space.create"))
    assert "small, template b" in shown and "plain, template a" in shown


def test_a_space_on_a_broker_without_templates_is_audited_as_such(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    authorize(people["alice"], "--no-share", "--name", "demo")
    (row,) = json.loads(ok(admin(broker, "audit", "--action", "space.create", "--json")))
    assert row["detail"] == "demo, no template"
    assert row["detail"].partition(", ")[0] == "demo"  # the name first, as in rows before the template
