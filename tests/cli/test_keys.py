"""`pair keys add|list|remove` with real keys from ssh-keygen."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from pair.api.errors import ApiError
from tests.cli.helpers import assert_error, client_as, ssh_keygen, ssh_keygen_l
from tests.support.broker import InProcessBroker
from tests.support.cli import Person
from tests.support.tools import need_tool


def default_key(person: Person, kind: str = "ed25519") -> Path:
    """~/.ssh/id_KIND(.pub) in the person's home (their HOME while they run `pair`)."""
    return ssh_keygen(person.home / ".ssh" / f"id_{kind}", kind, comment=person.email)


def test_add_then_list_prints_what_ssh_keygen_prints(people: dict[str, Person]) -> None:
    alice = people["alice"]
    pub = ssh_keygen(alice.home / "keys" / "work", comment="alice@laptop")
    expected = ssh_keygen_l(pub)
    assert expected.startswith("256 SHA256:")
    assert expected.endswith(" alice@laptop (ED25519)")

    added = alice.pair("keys", "add", str(pub))
    assert added.ok, added.err
    assert added.out == f"Added {expected}\n"
    listed = alice.pair("keys", "list")
    assert listed.ok, listed.err
    assert listed.out == expected + "\n"


def test_list_prints_ssh_keygen_lines_for_rsa_and_ecdsa_too_oldest_first(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    alice = people["alice"]
    pubs = [
        ssh_keygen(alice.home / "keys" / "rsa", "rsa", bits=3072, comment="rsa key"),
        ssh_keygen(alice.home / "keys" / "ecdsa", "ecdsa", bits=384, comment=""),
        ssh_keygen(alice.home / "keys" / "ed", comment="last"),
    ]
    for pub in pubs:
        assert alice.pair("keys", "add", str(pub)).ok
        broker.clock.advance(1)
    assert alice.pair("keys", "list").out.splitlines() == [ssh_keygen_l(p) for p in pubs]


def test_list_with_no_keys(people: dict[str, Person]) -> None:
    result = people["bob"].pair("keys", "list")
    assert result.ok
    assert "No SSH keys yet" in result.out
    assert "pair keys add" in result.out


def test_add_defaults_to_the_ed25519_key_in_home(people: dict[str, Person]) -> None:
    bob = people["bob"]
    pub = default_key(bob)
    result = bob.pair("keys", "add")
    assert result.ok, result.err
    assert result.out == f"Added {ssh_keygen_l(pub)}\n"


def test_add_falls_back_to_other_default_keys(people: dict[str, Person]) -> None:
    bob = people["bob"]
    pub = default_key(bob, "ecdsa")
    result = bob.pair("keys", "add")
    assert result.out == f"Added {ssh_keygen_l(pub)}\n", result.err


def test_add_without_any_default_key(people: dict[str, Person]) -> None:
    bob = people["bob"]
    result = bob.pair("keys", "add")
    assert_error(result, f"No public key found in {bob.home / '.ssh'}", hint="ssh-keygen -t ed25519")


def test_add_generate_makes_a_key_when_there_is_none_and_then_reuses_it(people: dict[str, Person]) -> None:
    need_tool("ssh-keygen")
    bob = people["bob"]
    result = bob.pair("keys", "add", "--generate")
    assert result.ok, result.err
    private = bob.home / ".ssh" / "id_ed25519"
    assert result.out.splitlines()[0] == f"Made a new SSH key {private} (ssh-keygen -t ed25519)."
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert result.out.splitlines()[1] == "Added " + ssh_keygen_l(private.with_name("id_ed25519.pub"))
    before = private.read_bytes()
    again = bob.pair("keys", "add", "--generate")  # the key exists: added again (refused as a duplicate), not remade
    assert private.read_bytes() == before
    assert "Made a new SSH key" not in again.out


def test_add_a_missing_file(people: dict[str, Person]) -> None:
    missing = people["bob"].home / "nope.pub"
    assert_error(
        people["bob"].pair("keys", "add", str(missing)), f"Cannot read the public key file {missing}", hint=".pub"
    )


def test_private_key_is_refused_locally(broker: InProcessBroker, people: dict[str, Person]) -> None:
    bob = people["bob"]
    pub = default_key(bob)
    private = pub.with_suffix("")
    result = bob.pair("keys", "add", str(private))
    message, hint = assert_error(result, "This is a private key")
    assert message.startswith(f"{private}: ")
    assert ".pub" in hint
    with client_as(broker, bob) as client:
        assert client.ssh_keys() == []


def test_private_key_would_be_refused_by_the_broker_too(broker: InProcessBroker, people: dict[str, Person]) -> None:
    private = default_key(people["bob"]).with_suffix("")
    with client_as(broker, people["bob"]) as client, pytest.raises(ApiError) as caught:
        client.add_key(private.read_text())
    assert caught.value.status == 422
    assert "private key" in caught.value.message


def test_small_rsa_key_is_refused(broker: InProcessBroker, people: dict[str, Person]) -> None:
    bob = people["bob"]
    pub = ssh_keygen(bob.home / "keys" / "weak", "rsa", bits=1024)
    assert_error(bob.pair("keys", "add", str(pub)), "only 1024 bits", "2048", hint="ssh-keygen -t ed25519")
    with client_as(broker, bob) as client:
        assert client.ssh_keys() == []
        with pytest.raises(ApiError) as caught:
            client.add_key(pub.read_text())
        assert caught.value.status == 422


def test_a_key_belongs_to_one_account(people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    pub = ssh_keygen(alice.home / "keys" / "shared")
    fingerprint = ssh_keygen_l(pub).split()[1]
    assert alice.pair("keys", "add", str(pub)).ok

    theirs = bob.pair("keys", "add", str(pub))
    assert_error(theirs, f"The key {fingerprint} is already registered to another account.", hint="ssh-keygen")
    assert "No SSH keys yet" in bob.pair("keys", "list").out

    mine = alice.pair("keys", "add", str(pub))
    assert_error(mine, f"The key {fingerprint} is already registered to your account.")
    assert alice.pair("keys", "list").out == ssh_keygen_l(pub) + "\n"


def test_a_removed_key_can_be_registered_by_someone_else(people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    pub = ssh_keygen(alice.home / "keys" / "handed-over")
    fingerprint = ssh_keygen_l(pub).split()[1]
    assert alice.pair("keys", "add", str(pub)).ok
    assert alice.pair("keys", "remove", fingerprint).ok
    assert bob.pair("keys", "add", str(pub)).ok


@pytest.mark.parametrize("prefix", [True, False], ids=["with-SHA256", "bare"])
def test_remove_by_fingerprint(people: dict[str, Person], prefix: bool) -> None:
    alice = people["alice"]
    keep = ssh_keygen(alice.home / "keys" / "keep", comment="keep")
    drop = ssh_keygen(alice.home / "keys" / "drop", comment="drop")
    for pub in (keep, drop):
        assert alice.pair("keys", "add", str(pub)).ok
    line = ssh_keygen_l(drop)
    fingerprint = line.split()[1]
    assert fingerprint.startswith("SHA256:")

    result = alice.pair("keys", "remove", fingerprint if prefix else fingerprint.removeprefix("SHA256:"))
    assert result.ok, result.err
    assert result.out == f"Removed {line}\n"
    assert alice.pair("keys", "list").out == ssh_keygen_l(keep) + "\n"


def test_remove_an_unknown_fingerprint(people: dict[str, Person]) -> None:
    alice = people["alice"]
    pub = ssh_keygen(alice.home / "keys" / "mine")
    assert alice.pair("keys", "add", str(pub)).ok
    result = alice.pair("keys", "remove", "SHA256:doesnotexist")
    assert_error(result, "You have no key with the fingerprint SHA256:doesnotexist.", hint="pair keys list")
    assert alice.pair("keys", "list").out == ssh_keygen_l(pub) + "\n"


def test_cannot_remove_someone_elses_key(people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    pub = ssh_keygen(alice.home / "keys" / "mine")
    fingerprint = ssh_keygen_l(pub).split()[1]
    assert alice.pair("keys", "add", str(pub)).ok
    assert_error(bob.pair("keys", "remove", fingerprint), "You have no key with the fingerprint")
    assert alice.pair("keys", "list").out == ssh_keygen_l(pub) + "\n"


def test_removing_someone_elses_key_by_id_is_404(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice_pub = ssh_keygen(people["alice"].home / "keys" / "mine")
    with client_as(broker, people["alice"]) as alice:
        key = alice.add_key(alice_pub.read_text())
    with client_as(broker, people["bob"]) as bob, pytest.raises(ApiError) as caught:
        bob.remove_key(key.id)
    assert caught.value.status == 404
    with client_as(broker, people["alice"]) as alice:
        assert [k.id for k in alice.ssh_keys()] == [key.id]
