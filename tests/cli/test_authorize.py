"""`pair spaces authorize`: creating a Space, its token file, and renewing a token with --space."""

from __future__ import annotations

import os
import re
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker import names
from tests.cli.helpers import (
    NOT_A_REGULAR_FILE,
    assert_error,
    authorize,
    b64url,
    client_as,
    jwt_parts,
    list_json,
    space_id,
)
from tests.support.broker import InProcessBroker
from tests.support.cli import Person

TWO_LINES = re.compile(
    r'You\'re ready to bootstrap your Space "(?P<name>[a-z0-9_-]+)"\.\n'
    r"Your Space's token is valid for (?P<ttl>[^\n]+) and is available from (?P<file>[^\n]+)\.\n"
)


def nothing_created(person: Person) -> None:
    assert list_json(person) == []
    assert not (person.cwd / "SPACE_ID.txt").exists()


# -- the two lines and the token file -------------------------------------------------------


def test_prints_exactly_two_lines(people: dict[str, Person]) -> None:
    result = people["alice"].pair("spaces", "authorize", "--no-share")
    assert result.ok, result.err
    assert result.err == ""
    match = TWO_LINES.fullmatch(result.out)
    assert match, result.out
    assert match["ttl"] == "1 hour"
    assert match["file"] == "SPACE_ID.txt"
    assert [row["name"] for row in list_json(people["alice"])] == [match["name"]]


def test_token_file_is_one_private_jwt_line_with_the_claims(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "demo")
    path = alice.cwd / "SPACE_ID.txt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.endswith("\n")
    assert len(text.splitlines()) == 1
    token = text.strip()

    header, claims = jwt_parts(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"]
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["iat"] == int(broker.clock())
    assert claims["sub"] == space_id(alice, "demo")
    assert claims["iss"] == broker.url
    assert claims["aud"] == "pair:space-bootstrap"
    assert claims["jti"]


def test_token_verifies_against_the_published_jwks(broker: InProcessBroker, people: dict[str, Person]) -> None:
    _, token = authorize(people["alice"], "--no-share")
    header, _ = jwt_parts(token)
    jwks = broker.http.get("/.well-known/jwks.json").json()["keys"]
    jwk = next(k for k in jwks if k["kid"] == header["kid"])
    assert (jwk["kty"], jwk["crv"]) == ("OKP", "Ed25519")
    signing_input, _, signature = token.rpartition(".")
    key = Ed25519PublicKey.from_public_bytes(b64url(jwk["x"]))
    key.verify(b64url(signature), signing_input.encode())  # raises InvalidSignature if it does not match


def test_an_existing_loose_token_file_is_replaced_0600(people: dict[str, Person]) -> None:
    alice = people["alice"]
    old = alice.cwd / "SPACE_ID.txt"
    old.write_text("old\n")
    old.chmod(0o644)
    _, token = authorize(alice, "--no-share")
    assert old.read_text() == token + "\n"
    assert stat.S_IMODE(old.stat().st_mode) == 0o600


def test_ttl_30m(people: dict[str, Person]) -> None:
    result = people["alice"].pair("spaces", "authorize", "--no-share", "--ttl", "30m")
    match = TWO_LINES.fullmatch(result.out)
    assert match, (result.out, result.err)
    assert match["ttl"] == "30 minutes"
    _, claims = jwt_parts((people["alice"].cwd / "SPACE_ID.txt").read_text().strip())
    assert claims["exp"] - claims["iat"] == 1800


def test_ttl_at_the_broker_cap_is_accepted(broker: InProcessBroker, people: dict[str, Person]) -> None:
    cap = broker.ctx.settings.max_token_ttl
    result = people["alice"].pair("spaces", "authorize", "--no-share", "--ttl", str(cap))
    match = TWO_LINES.fullmatch(result.out)
    assert match, (result.out, result.err)
    assert match["ttl"] == "1 day"


@pytest.mark.parametrize(
    ("ttl", "message", "hint"),
    [
        ("86401", "may live at most 86400 seconds", "shorter --ttl"),
        ("2d", "may live at most 86400 seconds", "shorter --ttl"),
        ("30s", "at least one minute", "longer --ttl"),
        ("soon", "'soon' is not a duration.", "1h, 30m"),
        ("1h30", "is not a duration.", "1h, 30m"),
    ],
)
def test_bad_ttl_is_refused_and_creates_nothing(people: dict[str, Person], ttl: str, message: str, hint: str) -> None:
    alice = people["alice"]
    assert_error(alice.pair("spaces", "authorize", "--no-share", "--ttl", ttl), message, hint=hint)
    nothing_created(alice)


# -- --output --------------------------------------------------------------------------------


def test_output_elsewhere(people: dict[str, Person]) -> None:
    alice = people["alice"]
    (alice.cwd / "tokens").mkdir()
    result = alice.pair("spaces", "authorize", "--no-share", "--output", "tokens/demo.jwt")
    match = TWO_LINES.fullmatch(result.out)
    assert match, (result.out, result.err)
    assert match["file"] == "tokens/demo.jwt"
    written = alice.cwd / "tokens" / "demo.jwt"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert jwt_parts(written.read_text().strip())[1]["sub"] == list_json(alice)[0]["id"]
    assert not (alice.cwd / "SPACE_ID.txt").exists()


def test_output_in_a_missing_directory_creates_nothing(people: dict[str, Person]) -> None:
    alice = people["alice"]
    result = alice.pair("spaces", "authorize", "--user", "bob@example.com", "--output", "missing/SPACE_ID.txt")
    assert_error(result, "The directory missing does not exist.", hint="--output")
    nothing_created(alice)
    assert list_json(people["bob"]) == []


def test_output_that_is_a_directory_creates_nothing(people: dict[str, Person]) -> None:
    alice = people["alice"]
    (alice.cwd / "adir").mkdir()
    assert_error(alice.pair("spaces", "authorize", "--no-share", "--output", "adir"), "adir is a directory")
    nothing_created(alice)


@pytest.mark.parametrize("kind", sorted(NOT_A_REGULAR_FILE))
def test_output_that_is_not_a_regular_file_is_refused_before_anything_is_created(
    people: dict[str, Person], kind: str
) -> None:
    alice = people["alice"]
    make, message = NOT_A_REGULAR_FILE[kind]
    target = alice.cwd / "out.txt"
    make(target)
    before = {p.name: (p.lstat().st_mode, p.is_symlink()) for p in alice.cwd.iterdir()}
    assert_error(alice.pair("spaces", "authorize", "--no-share", "-o", "out.txt"), message, hint="--output")
    nothing_created(alice)
    assert {p.name: (p.lstat().st_mode, p.is_symlink()) for p in alice.cwd.iterdir()} == before


def test_output_dash_is_the_token_alone_on_standard_output(people: dict[str, Person]) -> None:
    alice = people["alice"]
    result = alice.pair("spaces", "authorize", "--no-share", "--name", "demo", "--output", "-")
    assert result.ok, result.err
    assert len(result.out.splitlines()) == 1
    assert jwt_parts(result.out.strip())[1]["sub"] == list_json(alice)[0]["id"]
    assert result.err.startswith('You\'re ready to bootstrap your Space "demo".\n')
    assert list(alice.cwd.iterdir()) == []


def test_a_write_that_fails_after_the_space_exists_is_one_error_and_leaves_no_temp_file(
    people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = people["alice"]

    def immutable(src: object, dst: object) -> None:  # what chattr +i does to the rename
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "replace", immutable)
    result = alice.pair("spaces", "authorize", "--no-share", "--name", "demo")
    _, hint = assert_error(result, "Cannot write the token to SPACE_ID.txt: Operation not permitted.")
    assert "pair spaces authorize --space demo --output FILE" in hint
    assert not [p for p in alice.cwd.iterdir() if p.name.endswith(".tmp")]


# -- who it is shared with -------------------------------------------------------------------


def test_user_shares_it(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    authorize(alice, "--user", "bob@example.com", "--user", "CAROL@example.com", "--user", "bob@example.com")
    with client_as(broker, alice) as client:
        (space,) = client.spaces()
    assert sorted(space.shared_with or []) == ["bob@example.com", "carol@example.com"]
    assert [r["id"] for r in list_json(bob)] == [space.id]
    assert [r["id"] for r in list_json(carol)] == [space.id]


def test_unknown_users_are_named_in_one_error_and_nothing_is_created(people: dict[str, Person]) -> None:
    alice = people["alice"]
    result = alice.pair(
        "spaces", "authorize", "--user", "bob@example.com", "--user", "zed@example.com", "--user", "yan@example.com"
    )
    message, hint = assert_error(result, "zed@example.com", "yan@example.com")
    assert "bob@example.com" not in message
    assert "pair-broker users add" in hint
    nothing_created(alice)
    assert list_json(people["bob"]) == []


def test_an_invalid_email_is_refused(people: dict[str, Person]) -> None:
    alice = people["alice"]
    assert_error(alice.pair("spaces", "authorize", "--user", "bob"), "'bob' is not an email address.")
    nothing_created(alice)


def test_sharing_with_yourself_is_refused(people: dict[str, Person]) -> None:
    alice = people["alice"]
    assert_error(alice.pair("spaces", "authorize", "--user", "alice@example.com"), "You own this Space")
    nothing_created(alice)


def test_no_share(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "solo")
    with client_as(broker, alice) as client:
        assert [(s.name, s.shared_with) for s in client.spaces()] == [("solo", [])]
    assert list_json(people["bob"]) == []
    assert list_json(people["carol"]) == []


def test_no_flags_and_no_terminal_asks_for_flags_and_creates_nothing(people: dict[str, Person]) -> None:
    alice = people["alice"]
    _, hint = assert_error(alice.pair("spaces", "authorize"), "no terminal")
    assert "--user" in hint
    assert "--no-share" in hint
    nothing_created(alice)


def test_user_and_no_share_contradict(people: dict[str, Person]) -> None:
    alice = people["alice"]
    assert_error(alice.pair("spaces", "authorize", "--user", "bob@example.com", "--no-share"), "contradict")
    nothing_created(alice)


# -- names -----------------------------------------------------------------------------------


def test_name_taken_twice_is_409_with_a_hint(people: dict[str, Person]) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "demo")
    first = (alice.cwd / "SPACE_ID.txt").read_text()
    _, hint = assert_error(
        alice.pair("spaces", "authorize", "--no-share", "--name", "demo"), 'You already have a Space named "demo".'
    )
    assert "--space demo" in hint
    assert [r["name"] for r in list_json(alice)] == ["demo"]
    assert (alice.cwd / "SPACE_ID.txt").read_text() == first


def test_names_are_unique_per_owner_not_globally(people: dict[str, Person]) -> None:
    authorize(people["alice"], "--no-share", "--name", "demo")
    authorize(people["bob"], "--no-share", "--name", "demo")
    assert [r["name"] for r in list_json(people["bob"])] == ["demo"]


@pytest.mark.parametrize("name", ["Demo", "my space", "-demo", "_demo", "a" * 64, "demo;rm", "démo", "a.b", ""])
def test_invalid_names_are_refused(people: dict[str, Person], name: str) -> None:
    alice = people["alice"]
    _, hint = assert_error(alice.pair("spaces", "authorize", "--no-share", "--name", name), "not a valid Space name")
    assert "lowercase" in hint
    nothing_created(alice)


@pytest.mark.parametrize("name", ["a", "0", "my-space_2", "a" * 63])
def test_valid_names(people: dict[str, Person], name: str) -> None:
    assert authorize(people["alice"], "--no-share", "--name", name)[0] == name


def test_generated_names_are_adjective_surname(people: dict[str, Person]) -> None:
    alice = people["alice"]
    for _ in range(5):
        name, _ = authorize(alice, "--no-share")
        adjective, _, surname = name.partition("_")
        assert adjective in names.ADJECTIVES, name
        assert surname in names.SURNAMES, name
    assert len({r["name"] for r in list_json(alice)}) == 5


def test_generated_names_stay_unique_per_owner_when_the_generator_repeats(
    people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(names, "generate", lambda: "dynamic_stark")
    alice, bob = people["alice"], people["bob"]
    assert authorize(alice, "--no-share")[0] == "dynamic_stark"
    second, _ = authorize(alice, "--no-share")
    assert second != "dynamic_stark"
    assert re.fullmatch(r"dynamic_stark_\d+", second)
    assert authorize(bob, "--no-share")[0] == "dynamic_stark"  # another owner may have the same name


# -- --space: a fresh token for an existing Space ---------------------------------------------


def test_space_renews_the_token_and_keeps_shares(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    _, first = authorize(alice, "--user", "bob@example.com", "--name", "demo")
    broker.clock.advance(7200)  # the first token has expired

    result = alice.pair("spaces", "authorize", "--space", "demo")
    assert result.ok, result.err
    assert result.out == (
        'You\'re ready to bootstrap your Space "demo".\n'
        "Your Space's token is valid for 1 hour and is available from SPACE_ID.txt.\n"
    )
    second = (alice.cwd / "SPACE_ID.txt").read_text().strip()
    old, new = jwt_parts(first)[1], jwt_parts(second)[1]
    assert new["sub"] == old["sub"] == space_id(alice, "demo")
    assert new["jti"] != old["jti"]
    assert new["iat"] == old["iat"] + 7200
    assert new["exp"] - new["iat"] == 3600
    assert len(list_json(alice)) == 1
    assert [r["id"] for r in list_json(bob)] == [new["sub"]]


def test_space_by_id_with_ttl(people: dict[str, Person]) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "demo")
    sid = space_id(alice, "demo")
    result = alice.pair("spaces", "authorize", "--space", sid, "--ttl", "2h", "-o", "renewed.txt")
    match = TWO_LINES.fullmatch(result.out)
    assert match, (result.out, result.err)
    assert (match["name"], match["ttl"], match["file"]) == ("demo", "2 hours", "renewed.txt")
    assert jwt_parts((alice.cwd / "renewed.txt").read_text().strip())[1]["sub"] == sid


def test_space_with_user_adds_a_share(broker: InProcessBroker, people: dict[str, Person]) -> None:
    alice, carol = people["alice"], people["carol"]
    authorize(alice, "--user", "bob@example.com", "--name", "demo")
    assert list_json(carol) == []
    authorize(alice, "--space", "demo", "--user", "carol@example.com")
    assert [r["name"] for r in list_json(carol)] == ["demo"]
    with client_as(broker, alice) as client:
        (space,) = client.spaces()
    assert sorted(space.shared_with or []) == ["bob@example.com", "carol@example.com"]


def test_space_and_name_together_are_refused(people: dict[str, Person]) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "demo")
    (alice.cwd / "SPACE_ID.txt").unlink()
    assert_error(alice.pair("spaces", "authorize", "--space", "demo", "--name", "other"), "--space renews")
    assert not (alice.cwd / "SPACE_ID.txt").exists()


def test_shared_user_cannot_renew_the_token(people: dict[str, Person]) -> None:
    alice, bob = people["alice"], people["bob"]
    authorize(alice, "--user", "bob@example.com", "--name", "demo")
    for ref in ("demo", space_id(bob, "demo")):
        result = bob.pair("spaces", "authorize", "--space", ref)
        assert_error(result, 'Only the owner of "demo" (alice@example.com) can authorize it.')
        assert not (bob.cwd / "SPACE_ID.txt").exists()


def test_someone_elses_space_is_not_found(people: dict[str, Person]) -> None:
    alice, carol = people["alice"], people["carol"]
    authorize(alice, "--user", "bob@example.com", "--name", "demo")
    sid = space_id(alice, "demo")
    for ref in ("demo", sid):
        result = carol.pair("spaces", "authorize", "--space", ref, "--user", "carol@example.com")
        assert_error(result, f"No Space you can see is called {ref!r}.", hint="pair spaces list")
        assert not (carol.cwd / "SPACE_ID.txt").exists()
    assert list_json(carol) == []


def test_space_with_an_unknown_user_issues_no_token(people: dict[str, Person]) -> None:
    alice = people["alice"]
    authorize(alice, "--no-share", "--name", "demo")
    (alice.cwd / "SPACE_ID.txt").unlink()
    assert_error(alice.pair("spaces", "authorize", "--space", "demo", "--user", "zed@example.com"), "zed@example.com")
    assert not (alice.cwd / "SPACE_ID.txt").exists()


def test_a_failed_renewal_shares_with_nobody(people: dict[str, Person]) -> None:
    alice, carol = people["alice"], people["carol"]
    authorize(alice, "--no-share", "--name", "demo")
    result = alice.pair("spaces", "authorize", "--space", "demo", "--user", "carol@example.com", "--ttl", "2d")
    assert_error(result, "may live at most")
    assert list_json(carol) == []


def test_output_under_a_regular_file_creates_nothing(people: dict[str, Person]) -> None:
    alice = people["alice"]
    (alice.cwd / "afile").write_text("")
    result = alice.pair("spaces", "authorize", "--no-share", "--output", "afile/SPACE_ID.txt")
    assert_error(result, "Cannot use afile/SPACE_ID.txt for the token: Not a directory.", hint="--output")
    nothing_created(alice)
