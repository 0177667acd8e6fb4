"""The admin endpoints, through `pair.api.client.Client` (the CLI has no admin verbs; the operator
uses `pair-broker users …`), and what they do to people using the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pair.api.errors import ApiError, PairError
from tests.cli.helpers import assert_error, authorize, client_as, list_json, me_status, session_token, space_ids
from tests.support.broker import TEST_URL, InProcessBroker
from tests.support.cli import Person, Result


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.admin_users(),
        lambda c: c.admin_add_user("mallory@example.com", is_admin=True),
        lambda c: c.admin_reset_key("carol@example.com"),
        lambda c: c.admin_remove_user("carol@example.com"),
    ],
    ids=["users", "add", "reset-key", "remove"],
)
def test_non_admins_get_403(broker: InProcessBroker, people: dict[str, Person], call) -> None:
    with client_as(broker, people["bob"]) as bob, pytest.raises(ApiError) as caught:
        call(bob)
    assert caught.value.status == 403
    assert caught.value.message == "This needs an admin account."
    # nothing happened: carol is still there with her session, mallory was not created
    with client_as(broker, people["alice"]) as alice:
        assert [u.email for u in alice.admin_users()] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert me_status(broker, session_token(people["carol"])) == 200


def test_admin_adds_a_user_who_can_log_in_with_the_key(
    broker: InProcessBroker, people: dict[str, Person], tmp_path: Path
) -> None:
    with client_as(broker, people["alice"]) as alice:
        added = alice.admin_add_user("Dave@Example.com")
        assert added.user.email == "dave@example.com"
        assert not added.user.is_admin
        assert added.auth_key
        assert "dave@example.com" in [u.email for u in alice.admin_users()]
        with pytest.raises(ApiError) as dup:
            alice.admin_add_user("dave@example.com")
        assert dup.value.status == 409
        assert "reset-key" in dup.value.hint
    broker.keys["dave@example.com"] = added.auth_key
    dave = Person(broker, "dave@example.com", tmp_path / "dave")
    assert dave.login().out == f"Logged in to {TEST_URL} as dave@example.com.\n"
    assert dave.pair("whoami").out == f"dave@example.com on {TEST_URL}\n"


def test_admin_can_add_another_admin(broker: InProcessBroker, people: dict[str, Person], tmp_path: Path) -> None:
    with client_as(broker, people["alice"]) as alice:
        added = alice.admin_add_user("root@example.com", is_admin=True)
    broker.keys["root@example.com"] = added.auth_key
    root = Person(broker, "root@example.com", tmp_path / "root")
    root.login()
    assert root.pair("whoami").out == f"root@example.com (admin) on {TEST_URL}\n"
    with client_as(broker, root) as client:
        assert len(client.admin_users()) == 4


@pytest.mark.parametrize(
    "email",
    ["not-an-email", "eve\x1b[31m@example.com", "eve\n@example.com", "<eve>@example.com", '"eve"@example.com',
     "o'eve@example.com", "eve\u202e@example.com", "eve@exa mple.com"],
)  # fmt: skip
def test_adding_an_invalid_email_is_refused(broker: InProcessBroker, people: dict[str, Person], email: str) -> None:
    """By the broker (422), and by the client before it sends, in the same words (pair.api.fields)."""
    answer = broker.http.post(
        "/api/v1/admin/users",
        json={"email": email},
        headers={"Authorization": f"Bearer {session_token(people['alice'])}"},
    )
    assert answer.status_code == 422, answer.text
    with client_as(broker, people["alice"]) as alice, pytest.raises(PairError) as caught:
        alice.admin_add_user(email)
    assert not isinstance(caught.value, ApiError)  # nothing was sent
    assert caught.value.message == answer.json()["message"]
    assert "not an email address" in caught.value.message
    assert caught.value.message.isprintable()  # named escaped, never raw


def test_reset_key_replaces_the_key_and_ends_sessions(broker: InProcessBroker, people: dict[str, Person]) -> None:
    bob = people["bob"]
    old_key, old_token = broker.keys[bob.email], session_token(bob)
    with client_as(broker, people["alice"]) as alice:
        reset = alice.admin_reset_key("bob@example.com")
    assert reset.user.email == "bob@example.com"
    assert reset.auth_key != old_key

    assert me_status(broker, old_token) == 401
    assert_error(bob.pair("whoami"), "your session has expired", hint="pair login")
    assert me_status(broker, session_token(people["carol"])) == 200  # nobody else's

    assert_error(_login(bob, old_key), "do not match")
    broker.keys[bob.email] = reset.auth_key
    bob.login()
    assert bob.pair("whoami").ok


def _login(person: Person, key: str) -> Result:
    key_file = person.home / "other.key"
    key_file.write_text(key)
    return person.pair("login", person.email, "--key-file", str(key_file), "--url", TEST_URL)


def test_reset_key_of_an_unknown_user_is_404(broker: InProcessBroker, people: dict[str, Person]) -> None:
    with client_as(broker, people["alice"]) as alice, pytest.raises(ApiError) as caught:
        alice.admin_reset_key("nobody@example.com")
    assert caught.value.status == 404


def test_remove_user_deletes_their_spaces_and_ends_their_sessions(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    authorize(bob, "--user", "carol@example.com", "--name", "bobs")
    authorize(alice, "--user", "bob@example.com", "--user", "carol@example.com", "--name", "alices")
    bobs_id = next(r["id"] for r in list_json(carol) if r["name"] == "bobs")
    bob_token = session_token(bob)

    with client_as(broker, alice) as admin:
        admin.admin_remove_user("bob@example.com")
        assert [u.email for u in admin.admin_users()] == ["alice@example.com", "carol@example.com"]
        alices = next(s for s in admin.spaces() if s.name == "alices")
        assert alices.shared_with == ["carol@example.com"]

    assert bobs_id not in space_ids(carol)
    assert [r["name"] for r in list_json(carol)] == ["alices"]
    assert me_status(broker, bob_token) == 401
    assert_error(bob.pair("spaces", "list"), "your session has expired")
    with client_as(broker, carol) as client, pytest.raises(ApiError) as caught:
        client.space(bobs_id)
    assert caught.value.status == 404


def test_a_removed_email_can_be_added_again_without_its_old_spaces(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    bob = people["bob"]
    authorize(bob, "--no-share", "--name", "old")
    with client_as(broker, people["alice"]) as alice:
        alice.admin_remove_user("bob@example.com")
        broker.keys[bob.email] = alice.admin_add_user("bob@example.com").auth_key
    bob.login()
    assert list_json(bob) == []
    authorize(bob, "--no-share", "--name", "old")


def test_remove_unknown_user_is_404(broker: InProcessBroker, people: dict[str, Person]) -> None:
    with client_as(broker, people["alice"]) as alice, pytest.raises(ApiError) as caught:
        alice.admin_remove_user("nobody@example.com")
    assert caught.value.status == 404
    assert "nobody@example.com" in caught.value.message
