"""One rule for the Space on every `pair spaces` verb: an optional positional SPACE or `--space
SPACE` (the same; both and different is an error); omitted, the only Space you can see (for
owner-only verbs, the only one you own); otherwise an error listing the candidates, with a hint
naming a form the verb accepts."""

from __future__ import annotations

import pytest

from pair.cli.connecting import parse_connect_args
from tests.cli.helpers import assert_error, authorize, space_id
from tests.support.cli import Person


@pytest.fixture
def demo(people: dict[str, Person]) -> str:
    """alice's only Space, "demo", shared with bob; returns its id."""
    authorize(people["alice"], "--user", "bob@example.com", "--name", "demo")
    return space_id(people["alice"], "demo")


SHARED = 'error: The Space "demo" is not running (created).'  # connect got as far as the Space itself


@pytest.mark.parametrize(
    "args",
    [
        ("demo",),
        ("--space", "demo"),
        ("demo", "--space", "demo"),
        (),  # bob sees only demo
        ("--", "uptime"),  # the issue's: uptime is the command, not the Space
        ("--", "-L", "3000:localhost:3000"),  # and -L goes to ssh
        ("demo", "--", "-L", "3000:localhost:3000", "uptime"),
        ("--space", "demo", "--", "uptime"),
    ],
    ids=" ".join,
)
def test_connect_finds_the_space_every_way(people: dict[str, Person], demo: str, args: tuple[str, ...]) -> None:
    result = people["bob"].pair("spaces", "connect", *args)
    assert result.err.splitlines()[0] == SHARED, result.err


def test_connect_by_id_and_a_conflict(people: dict[str, Person], demo: str) -> None:
    assert people["bob"].pair("spaces", "connect", demo).err.startswith(SHARED)
    assert_error(
        people["bob"].pair("spaces", "connect", "demo", "--space", "other"),
        "Two different Spaces were named: 'demo' and --space 'other'.",
        hint="pair spaces connect SPACE",
    )


def test_connect_with_several_spaces_names_them_and_a_form_it_accepts(people: dict[str, Person], demo: str) -> None:
    authorize(people["carol"], "--user", "bob@example.com", "--name", "web")
    message, hint = assert_error(people["bob"].pair("spaces", "connect", "--", "uptime"), "Which Space?")
    assert f"demo ({demo})" in message and "web (sp_" in message
    assert "`pair spaces connect SPACE [-- SSH_ARGS…]`" in hint
    assert (
        people["bob"]
        .pair("spaces", "connect", "web", "--", "uptime")
        .err.startswith('error: The Space "web" is not running')
    )


@pytest.mark.parametrize(
    ("words", "space", "ssh"),
    [
        ([], None, []),
        (["demo"], "demo", []),
        (["--", "uptime"], None, ["uptime"]),
        (["--", "-L", "3000:localhost:3000"], None, ["-L", "3000:localhost:3000"]),
        (["demo", "--", "-N", "-L", "1:h:2"], "demo", ["-N", "-L", "1:h:2"]),
        (["-L", "1:h:2", "demo", "uptime"], "demo", ["-L", "1:h:2", "uptime"]),
        (["--space", "demo", "--", "uptime"], None, ["uptime"]),
        (["--space=demo", "ls", "-l"], "ls", ["-l"]),
        (["demo", "--", "--", "x"], "demo", ["--", "x"]),
    ],
)
def test_parse_connect_args(words: list[str], space: str | None, ssh: list[str]) -> None:
    assert parse_connect_args(words) == (space, ssh)


# -- owner-only verbs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("share", "demo", "carol@example.com"),
        ("share", "carol@example.com"),  # the only Space alice owns
        ("share", "--space", "demo", "carol@example.com"),
        ("share", "demo", "--space", "demo", "carol@example.com"),
    ],
    ids=" ".join,
)
def test_share_takes_the_space_every_way(people: dict[str, Person], demo: str, args: tuple[str, ...]) -> None:
    result = people["alice"].pair("spaces", *args)
    assert result.ok, result.err
    assert result.out == '"demo" is shared with bob@example.com, carol@example.com.\n'
    unshared = people["alice"].pair("spaces", "unshare", "carol@example.com")
    assert unshared.out == '"demo" is shared with bob@example.com.\n'


@pytest.mark.parametrize("verb", ["up", "down", "sessions", "delete"])
def test_owner_verbs_take_a_positional_space_or_default_to_the_only_one_you_own(
    people: dict[str, Person], demo: str, verb: str
) -> None:
    alice = people["alice"]
    extra = ("--yes",) if verb == "delete" else ()
    for args in (("demo",), ("--space", demo), ()):
        result = alice.pair("spaces", verb, *args, *extra)
        if verb == "up":  # no container is connected here: the refusal names the Space it resolved
            assert_error(result, 'The container of "demo" is not running')
        else:
            assert result.ok, result.err
        if verb == "delete":
            assert result.out == f'Deleted space "demo" ({demo}).\n'
            break


def test_kick_takes_an_optional_space(people: dict[str, Person], demo: str) -> None:
    alice = people["alice"]
    assert alice.pair("spaces", "kick", "bob@example.com").out == 'Ended bob@example.com\'s sessions in "demo".\n'
    assert alice.pair("spaces", "kick", "demo", "bob@example.com").ok
    assert_error(alice.pair("spaces", "kick", "demo", "bob@example.com", "x@example.com"), hint="pair spaces kick")


def test_owner_verbs_with_several_owned_spaces_list_them(people: dict[str, Person], demo: str) -> None:
    authorize(people["alice"], "--no-share", "--name", "web")
    for verb, args in (("sessions", ()), ("share", ("carol@example.com",)), ("down", ())):
        message, hint = assert_error(people["alice"].pair("spaces", verb, *args), "Which Space? You own several:")
        assert f"demo ({demo})" in message and "web (sp_" in message
        assert f"`pair spaces {verb} SPACE" in hint


def test_owner_verbs_default_only_to_a_space_you_own(people: dict[str, Person], demo: str) -> None:
    bob = people["bob"]  # sees alice's demo, owns nothing
    _, hint = assert_error(bob.pair("spaces", "sessions"), "You own no Space yet")
    assert "`pair spaces sessions SPACE`" in hint
    assert_error(bob.pair("spaces", "sessions", "demo"), 'Only the owner of "demo" (alice@example.com)')


def test_share_needs_an_email(people: dict[str, Person], demo: str) -> None:
    assert_error(people["alice"].pair("spaces", "share", "demo"), "Name at least one person", hint="EMAIL")
