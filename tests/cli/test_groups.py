"""Groups through the CLI and the admin API (issue 16): `pair-broker groups …`, `pair spaces share
--group`, and who then sees what. tests/container/test_groups.py ends real sessions."""

from __future__ import annotations

import pytest

from pair.api.errors import ApiError
from pair.api.models import Limits
from tests.cli.helpers import admin, assert_error, authorize, client_as, list_json, ok
from tests.support.broker import InProcessBroker
from tests.support.cli import Person


def names(person: Person) -> list[str]:
    return [row["name"] for row in list_json(person)]


def test_a_space_shared_with_a_group_reaches_its_members(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    ok(admin(broker, "groups", "add", "eng"))
    assert ok(admin(broker, "groups", "members", "add", "eng", "Bob@Example.com", "carol@example.com")) == (
        "eng: bob@example.com, carol@example.com.\n"
    )
    authorize(alice, "--no-share", "--name", "demo")
    assert names(bob) == []
    shared = alice.pair("spaces", "share", "demo", "--group", "eng")
    assert shared.out == '"demo" is shared with group eng.\n'
    assert names(bob) == names(carol) == ["demo"]
    assert list_json(bob)[0]["role"] == "shared"

    ok(admin(broker, "groups", "members", "remove", "eng", "carol@example.com"))
    assert names(carol) == []
    assert_error(carol.pair("spaces", "connect", "demo"), "No Space you can see is called 'demo'")
    unshared = alice.pair("spaces", "unshare", "demo", "--group", "eng")
    assert unshared.out == '"demo" is shared with nobody.\n'
    assert names(bob) == []

    assert_error(alice.pair("spaces", "share", "demo", "--group", "nosuch"), "The group 'nosuch' was not found.")
    listed = ok(admin(broker, "groups", "list"))
    assert listed == "eng  (spaces unlimited, compute unlimited, storage unlimited)\n  bob@example.com\n"
    ok(admin(broker, "groups", "remove", "eng"))
    assert ok(admin(broker, "groups", "list")) == ""


def test_group_admin_api_is_for_admins(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]  # alice is an admin
    with client_as(broker, bob) as client, pytest.raises(ApiError) as refused:
        client.add_group("eng")
    assert refused.value.status == 403
    with client_as(broker, alice) as client:
        client.add_group("eng")
        group = client.group_members("eng", add=[bob.email])
        assert group.members == [bob.email]
        assert client.set_group_quota("eng", Limits(compute=6)).quota == Limits(compute=6)
        quota = client.set_user_quota(bob.email, Limits(compute=4))
        compute = next(line for line in quota.lines if line.resource == "compute")
        assert (compute.limit, [s.name for s in compute.sources]) == (10, [bob.email, "eng"])
        with pytest.raises(ApiError) as taken:
            client.add_group("eng")
        assert (taken.value.status, taken.value.code) == (409, "exists")


def test_an_unknown_group_is_named_with_what_the_asker_can_do(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    """A non-admin was told to run `pair-broker groups list`, a command of the server's: now they
    are told to ask an admin, and an admin (alice) gets the admin command."""
    alice, bob = people["alice"], people["bob"]  # alice is an admin, bob is not
    authorize(bob, "--no-share", "--name", "bobs")
    _, hint = assert_error(
        bob.pair("spaces", "share", "bobs", "--group", "nosuch"), "The group 'nosuch' was not found."
    )
    assert hint == "Check its spelling, or ask an admin for the group's name."
    authorize(alice, "--no-share", "--name", "alices")
    _, hint = assert_error(
        alice.pair("spaces", "share", "alices", "--group", "nosuch"), "The group 'nosuch' was not found."
    )
    assert "`pair-broker groups list`" in hint
    _, hint = assert_error(bob.pair("spaces", "share", "bobs", "nobody@example.com"), "No account on this broker")
    assert hint == "Check the spelling, or ask an admin to create the account."
    _, hint = assert_error(alice.pair("spaces", "share", "alices", "nobody@example.com"), "No account on this broker")
    assert "`pair-broker users add EMAIL`" in hint
