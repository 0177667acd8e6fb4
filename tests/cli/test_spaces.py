"""`pair spaces list|share|unshare|delete`, and who may see or touch which Space."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from pair.api import grammar
from pair.api.client import Client
from pair.api.errors import ApiError
from pair.api.models import ContainerFacts
from tests.cli.helpers import LIST_HEADER, assert_error, authorize, client_as, list_json, space_id, space_ids
from tests.support.broker import InProcessBroker
from tests.support.cli import Person

GIB = 1024**3
CREATED_AT = "2027-01-15T08:00:00Z"  # the fake clock's start, 1_800_000_000


def table(person: Person) -> list[list[str]]:
    result = person.pair("spaces", "list")
    assert result.ok, result.err
    assert result.err == ""
    return [line.split() for line in result.out.splitlines()]


@pytest.fixture
def demo(people: dict[str, Person]) -> str:
    """alice's Space "demo", shared with bob; returns its id."""
    authorize(people["alice"], "--user", "bob@example.com", "--name", "demo")
    return space_id(people["alice"], "demo")


# -- list -------------------------------------------------------------------------------------


def test_list_columns_and_roles(people: dict[str, Person], demo: str) -> None:
    alice, bob = people["alice"], people["bob"]
    assert table(alice) == [LIST_HEADER, [demo, "demo", "owner", "created", CREATED_AT, *"------"]]
    assert table(bob) == [LIST_HEADER, [demo, "demo", "shared", "created", CREATED_AT, *"------"]]


def test_list_header_line_is_exactly_the_column_names(people: dict[str, Person], demo: str) -> None:
    header = people["alice"].pair("spaces", "list").out.splitlines()[0]
    assert " ".join(header.split()) == "id name role state created_at cpu memory disk net llm_tokens template"
    assert header == header.rstrip()


def test_list_owned_and_shared_oldest_first(broker: InProcessBroker, people: dict[str, Person], demo: str) -> None:
    bob = people["bob"]
    broker.clock.advance(60)
    authorize(bob, "--no-share", "--name", "mine")
    rows = table(bob)[1:]
    assert [(r[1], r[2]) for r in rows] == [("demo", "shared"), ("mine", "owner")]
    assert rows[1][4] == "2027-01-15T08:01:00Z"


def test_someone_it_is_not_shared_with_sees_nothing(people: dict[str, Person], demo: str) -> None:
    result = people["carol"].pair("spaces", "list")
    assert result.ok
    assert result.out == ""
    assert "No Spaces yet" in result.err
    assert "pair spaces authorize" in result.err
    as_json = people["carol"].pair("spaces", "list", "--json")
    assert as_json.ok
    assert as_json.out.strip() == "[]"


def test_list_json(people: dict[str, Person], demo: str) -> None:
    for person, role in ((people["alice"], "owner"), (people["bob"], "shared")):
        (row,) = list_json(person)
        assert set(row) == {*LIST_HEADER, "owner", "ssh"}
        assert row == {
            "id": demo,
            "name": "demo",
            "role": role,
            "state": "created",
            "created_at": CREATED_AT,
            "cpu": None,
            "memory": None,
            "disk": None,
            "owner": "alice@example.com",
            "ssh": None,
            "net": 0,
            "llm_tokens": None,
            "template": None,
        }


def test_list_shows_the_containers_size_once_bootstrapped(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice = people["alice"]
    _, token = authorize(alice, "--user", "bob@example.com", "--name", "demo")
    facts = ContainerFacts(hostname="box", cpus=2, memory_bytes=4 * GIB, disk_bytes=32 * GIB)
    with Client(broker.url, http=TestClient(broker.http.app, base_url=broker.url)) as container:
        container.bootstrap(token, "instance-1", facts)

    sid = space_id(alice, "demo")
    assert table(people["bob"])[1] == [
        sid,
        "demo",
        "shared",
        "starting",
        CREATED_AT,
        "2",
        "4.0",
        "GiB",
        "32.0",
        "GiB",
        *"---",
    ]
    (row,) = list_json(alice)
    assert (row["state"], row["cpu"], row["memory"], row["disk"]) == ("starting", 2, 4 * GIB, 32 * GIB)


# -- share / unshare ----------------------------------------------------------------------------


def test_share_and_unshare(broker: InProcessBroker, people: dict[str, Person], demo: str) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    shared = alice.pair("spaces", "share", "--space", "demo", "Carol@Example.com")
    assert shared.ok, shared.err
    assert shared.out == '"demo" is shared with bob@example.com, carol@example.com.\n'
    assert space_ids(carol) == {demo}

    unshared = alice.pair("spaces", "unshare", "--space", demo, "bob@example.com", "carol@example.com")
    assert unshared.ok, unshared.err
    assert unshared.out == '"demo" is shared with nobody.\n'
    assert space_ids(bob) == set()
    assert space_ids(carol) == set()
    assert space_ids(alice) == {demo}
    with client_as(broker, bob) as client, pytest.raises(ApiError) as caught:
        client.space(demo)
    assert caught.value.status == 404


def test_share_again_is_harmless(people: dict[str, Person], demo: str) -> None:
    result = people["alice"].pair("spaces", "share", "--space", "demo", "bob@example.com")
    assert result.out == '"demo" is shared with bob@example.com.\n', result.err


def test_share_with_unknown_people_names_them_all_and_changes_nothing(
    broker: InProcessBroker, people: dict[str, Person], demo: str
) -> None:
    alice = people["alice"]
    result = alice.pair("spaces", "share", "--space", "demo", "carol@example.com", "x@example.com", "y@example.com")
    message, _ = assert_error(result, "x@example.com", "y@example.com")
    assert "carol@example.com" not in message
    assert space_ids(people["carol"]) == set()
    with client_as(broker, alice) as client:
        assert client.space(demo).shared_with == ["bob@example.com"]


def test_unshare_unknown_people_is_an_error(people: dict[str, Person], demo: str) -> None:
    assert_error(people["alice"].pair("spaces", "unshare", "--space", "demo", "x@example.com"), "x@example.com")
    assert space_ids(people["bob"]) == {demo}


def test_sharing_with_yourself_is_refused(people: dict[str, Person], demo: str) -> None:
    result = people["alice"].pair("spaces", "share", "--space", "demo", "alice@example.com", "carol@example.com")
    assert_error(result, "You own this Space", hint="Drop your own email")
    assert space_ids(people["carol"]) == set()


@pytest.mark.parametrize(
    ("verb", "extra"),
    [("share", ["carol@example.com"]), ("unshare", ["bob@example.com"]), ("delete", ["--yes"])],
)
def test_a_shared_user_cannot_manage_the_space(
    people: dict[str, Person], demo: str, verb: str, extra: list[str]
) -> None:
    bob = people["bob"]
    for ref in ("demo", demo):
        result = bob.pair("spaces", verb, "--space", ref, *extra)
        assert_error(result, f'Only the owner of "demo" (alice@example.com) can {verb.removeprefix("un")} it.')
    assert space_ids(bob) == {demo}
    assert space_ids(people["carol"]) == set()


@pytest.mark.parametrize(
    ("verb", "extra"),
    [("share", ["carol@example.com"]), ("unshare", ["bob@example.com"]), ("delete", ["--yes"])],
)
def test_an_outsider_gets_not_found_exactly_as_for_a_made_up_id(
    people: dict[str, Person], demo: str, verb: str, extra: list[str]
) -> None:
    carol = people["carol"]
    made_up = "sp_" + "z" * (len(demo) - 3)
    real = assert_error(carol.pair("spaces", verb, "--space", demo, *extra))
    fake = assert_error(carol.pair("spaces", verb, "--space", made_up, *extra))
    assert "No Space you can see" in real[0]
    assert (real[0].replace(demo, "ID"), real[1]) == (fake[0].replace(made_up, "ID"), fake[1])
    assert space_ids(people["bob"]) == {demo}


def test_the_api_does_not_leak_that_an_id_exists(broker: InProcessBroker, people: dict[str, Person], demo: str) -> None:
    made_up = "sp_" + "z" * (len(demo) - 3)
    calls: list[Callable[[Client, str], object]] = [
        lambda c, sid: c.space(sid),
        lambda c, sid: c.share(sid, add=["carol@example.com"]),
        lambda c, sid: c.new_token(sid, ttl_seconds=None),
        lambda c, sid: c.delete_space(sid),
    ]
    with client_as(broker, people["carol"]) as carol:
        for call in calls:
            answers = []
            for sid in (demo, made_up):
                with pytest.raises(ApiError) as caught:
                    call(carol, sid)
                err = caught.value
                answers.append((err.status, err.code, err.message.replace(sid, "ID"), err.hint))
            assert answers[0] == answers[1]
            assert answers[0][0] == 404
    assert space_ids(people["alice"]) == {demo}


# -- delete ---------------------------------------------------------------------------------------


def test_delete_without_a_terminal_needs_yes(people: dict[str, Person], demo: str) -> None:
    alice = people["alice"]
    assert_error(alice.pair("spaces", "delete", "--space", "demo"), '"demo" needs confirmation', hint="--yes")
    assert space_ids(alice) == {demo}
    assert space_ids(people["bob"]) == {demo}


@pytest.mark.parametrize("flag", ["--yes", "-y"])
def test_delete(broker: InProcessBroker, people: dict[str, Person], demo: str, flag: str) -> None:
    alice, bob = people["alice"], people["bob"]
    token = (alice.cwd / "SPACE_ID.txt").read_text().strip()
    result = alice.pair("spaces", "delete", "--space", "demo", flag)
    assert result.ok, result.err
    assert result.out == f'Deleted space "demo" ({demo}).\n'
    assert space_ids(alice) == set()
    assert space_ids(bob) == set()

    # its token is dead: a container can no longer bootstrap with it
    with (
        Client(broker.url, http=TestClient(broker.http.app, base_url=broker.url)) as container,
        pytest.raises(ApiError) as caught,
    ):
        container.bootstrap(token, "instance-1", ContainerFacts())
    assert caught.value.status == 410

    # and the name is free again, for a new Space
    authorize(alice, "--user", "bob@example.com", "--name", "demo")
    new = space_id(alice, "demo")
    assert new != demo
    assert space_ids(bob) == {new}


def test_delete_by_id_leaves_other_spaces(people: dict[str, Person], demo: str) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "other")
    assert alice.pair("spaces", "delete", "--space", demo, "--yes").ok
    assert [r["name"] for r in list_json(alice)] == ["other"]


def test_delete_twice(people: dict[str, Person], demo: str) -> None:
    alice = people["alice"]
    assert alice.pair("spaces", "delete", "--space", demo, "--yes").ok
    assert_error(alice.pair("spaces", "delete", "--space", demo, "--yes"), "No Space you can see")


def test_delete_unknown_name(people: dict[str, Person], demo: str) -> None:
    assert_error(
        people["alice"].pair("spaces", "delete", "--space", "nope", "--yes"),
        "No Space you can see is called 'nope'.",
        hint="pair spaces list",
    )
    assert space_ids(people["alice"]) == {demo}


# -- --space NAME that more than one visible Space has ---------------------------------------------


@pytest.fixture
def two_demos(people: dict[str, Person]) -> tuple[str, str]:
    """alice and bob each own a "demo", both shared with carol."""
    authorize(people["alice"], "--user", "carol@example.com", "--name", "demo")
    authorize(people["bob"], "--user", "carol@example.com", "--name", "demo")
    return space_id(people["alice"], "demo"), space_id(people["bob"], "demo")


@pytest.mark.parametrize(
    "command",
    [
        ("spaces", "delete", "--yes"),
        ("spaces", "share", "alice@example.com"),
        ("spaces", "unshare", "bob@example.com"),
        ("spaces", "authorize"),
    ],
    ids=lambda c: c[1],
)
def test_an_ambiguous_name_lists_every_match(
    people: dict[str, Person], two_demos: tuple[str, str], command: tuple[str, ...]
) -> None:
    carol = people["carol"]
    alices, bobs = two_demos
    result = carol.pair(*command[:2], "--space", "demo", *command[2:])
    message, hint = assert_error(result, "Several Spaces you can see are called 'demo'")
    assert f"{alices} (owner alice@example.com)" in message
    assert f"{bobs} (owner bob@example.com)" in message
    assert "sp_" in hint
    assert space_ids(carol) == {alices, bobs}


def test_each_owner_still_resolves_their_own_name(people: dict[str, Person], two_demos: tuple[str, str]) -> None:
    alices, _ = two_demos
    assert people["bob"].pair("spaces", "delete", "--space", "demo", "--yes").ok
    assert space_ids(people["carol"]) == {alices}
    result = people["carol"].pair("spaces", "delete", "--space", "demo", "--yes")  # unambiguous now, not hers
    assert_error(result, 'Only the owner of "demo" (alice@example.com) can delete it.')


# -- terminals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["bogus", "TERM_ABCDEFGHIJKL", "term_abcdefghijk1", "term_abc\x1b]0;x\x07defghi"])
@pytest.mark.parametrize("command", ["terminal", "terminal-role"])
def test_a_terminal_id_is_checked_before_anything_connects(
    people: dict[str, Person], demo: str, command: str, bad: str
) -> None:
    """Repro: `pair spaces terminal demo --join bogus` printed msgspec's regex error and a hint
    about the URL's query, from the broker."""
    args = ("--join", bad) if command == "terminal" else (bad, "bob@example.com", "driver")
    message, hint = assert_error(people["alice"].pair("spaces", command, "demo", *args))
    assert message == f"{grammar.shown(bad)} is not a terminal id (term_ and 12 letters and digits)."
    assert hint == "List them with `pair spaces terminals SPACE`."
