"""`pair spaces bootstrap` in a container (a temporary PAIR_HOME), against the in-process broker."""

from __future__ import annotations

import base64
import json
import secrets
import stat
from pathlib import Path

import pytest

from broker.signing import Keyring
from pair.api.client import Client
from pair.api.errors import AuthError
from pair.api.models import ContainerFacts, SpaceTokenClaims
from pair.api.tokens import AUDIENCE, unverified_claims
from tests.support.broker import InProcessBroker
from tests.support.cli import Person, Result


@pytest.fixture
def token(people: dict[str, Person]) -> str:
    result = people["alice"].pair("spaces", "authorize", "--user", "bob@example.com", "--name", "demo")
    assert result.ok, result.err
    return (people["alice"].cwd / "SPACE_ID.txt").read_text().strip()


def bootstrap(person: Person, home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return person.pair("spaces", "bootstrap", *args, env={"PAIR_HOME": str(home), **(env or {})})


def registration(home: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads((home / "agent.json").read_text())
    return data


def credential_works(broker: InProcessBroker, home: Path, credential: str) -> bool:
    instance = (home / "instance-id").read_text().strip()
    try:
        with Client(broker.url, token=credential) as client:
            client.checkin(instance, ContainerFacts())
    except AuthError:
        return False
    return True


def alice_space(alice: Person) -> dict[str, object]:
    spaces = json.loads(alice.pair("spaces", "list", "--json").out)
    assert len(spaces) == 1
    space: dict[str, object] = spaces[0]
    return space


def test_bootstrap_registers_the_container(people, token, tmp_path):
    alice, home = people["alice"], tmp_path / "c1"
    result = bootstrap(alice, home, token)
    assert result.ok, result.err
    space = alice_space(alice)
    assert result.out == f'Bootstrapped this container as the Space "demo" ({space["id"]}) on http://testserver.\n'
    assert space["state"] == "starting"
    assert space["cpu"] and space["memory"] and space["disk"]  # the container's facts arrived
    for name in ("agent.json", "instance-id"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
    reg = registration(home)
    assert reg["space_id"] == space["id"]
    assert reg["credential"].startswith("pair_ac_")
    assert token not in (home / "agent.json").read_text()


def test_token_is_single_use_across_containers(people, token, tmp_path):
    alice = people["alice"]
    assert bootstrap(alice, tmp_path / "c1", token).ok
    second = bootstrap(alice, tmp_path / "c2", token)
    assert second.code == 1
    assert 'error: That token already bootstrapped another container as "demo".' in second.err
    assert "pair spaces authorize --space demo" in second.err
    assert not (tmp_path / "c2" / "agent.json").exists()


def test_retry_from_the_same_container_succeeds_and_replaces_the_credential(broker, people, token, tmp_path):
    alice, home = people["alice"], tmp_path / "c1"
    assert bootstrap(alice, home, token).ok
    first = registration(home)["credential"]
    (home / "agent.json").unlink()  # as if the first answer was lost on the way
    retry = bootstrap(alice, home, token)
    assert retry.ok, retry.err
    second = registration(home)["credential"]
    assert second != first
    assert credential_works(broker, home, second)
    assert not credential_works(broker, home, first)


def test_rerun_reuses_the_credential_long_after_the_token_expired(broker, people, token, tmp_path):
    alice, home = people["alice"], tmp_path / "c1"
    assert bootstrap(alice, home, token).ok
    broker.clock.advance(5 * 3600)
    for args in ((), (token,)):  # postAttachCommand passes nothing; a Devfile passes the old token
        again = bootstrap(alice, home, *args)
        assert again.ok, again.err
        assert again.out.startswith('This container is already the Space "demo"')


def test_token_from_environment_and_from_bootstrap_txt(people, token, tmp_path):
    alice = people["alice"]
    assert bootstrap(alice, tmp_path / "env", env={"PAIR_SPACE_TOKEN": token}).ok

    renewed = alice.pair("spaces", "authorize", "--space", "demo", "--output", "second.txt")
    assert renewed.ok, renewed.err
    home = tmp_path / "file"
    home.mkdir()
    (home / "bootstrap.txt").write_text((alice.cwd / "second.txt").read_text())
    result = bootstrap(alice, home)
    assert result.ok, result.err
    assert not (home / "bootstrap.txt").exists()  # not needed any more once bootstrapped


def test_no_token_and_not_bootstrapped(people, tmp_path):
    result = bootstrap(people["alice"], tmp_path / "c1")
    assert result.code == 1
    assert "error: No Space token, and this container is not bootstrapped yet." in result.err
    assert "PAIR_SPACE_TOKEN" in result.err and "SPACE_ID.txt" in result.err


def test_reauthorized_space_moves_to_the_rebuilt_container(broker, people, token, tmp_path):
    alice = people["alice"]
    old, new = tmp_path / "old", tmp_path / "new"
    assert bootstrap(alice, old, token).ok
    assert alice.pair("spaces", "authorize", "--space", "demo").ok
    result = bootstrap(alice, new, (alice.cwd / "SPACE_ID.txt").read_text())
    assert result.ok, result.err
    assert not credential_works(broker, old, registration(old)["credential"])
    gone = bootstrap(alice, old)
    assert gone.code == 1 and "agent credential is no longer valid" in gone.err


def test_deleted_space(broker, people, token, tmp_path):
    alice, home = people["alice"], tmp_path / "c1"
    assert bootstrap(alice, home, token).ok
    credential = registration(home)["credential"]
    assert alice.pair("spaces", "delete", "--space", "demo", "--yes").ok
    assert not credential_works(broker, home, credential)
    rerun = bootstrap(alice, home)
    assert rerun.code == 1 and "agent credential is no longer valid" in rerun.err
    fresh = bootstrap(alice, tmp_path / "c2", token)
    assert fresh.code == 1
    assert 'error: The Space "demo" was deleted.' in fresh.err


def _tamper(token: str, part: int) -> str:
    pieces = token.split(".")
    middle = len(pieces[part]) // 2
    swapped = "A" if pieces[part][middle] != "A" else "B"
    pieces[part] = pieces[part][:middle] + swapped + pieces[part][middle + 1 :]
    return ".".join(pieces)


def _extend_expiry(token: str) -> str:
    """Keep the signature, but claim a later expiry: what someone editing a token would try."""
    header, _payload, signature = token.split(".")
    claims = unverified_claims(token)
    claims["exp"] = int(str(claims["exp"])) + 86400
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join((header, forged, signature))


def _claims(token: str, **changes: object) -> SpaceTokenClaims:
    claims = unverified_claims(token)
    claims.update(changes, jti=secrets.token_urlsafe(8))
    return SpaceTokenClaims(**claims)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda b, t, tmp: _tamper(t, 2), "signature does not match"),
        (lambda b, t, tmp: _extend_expiry(t), "signature does not match"),
        (lambda b, t, tmp: b.ctx.keyring.sign(_claims(t, aud="somebody-else")), "not a Space token (wrong audience)"),
        (lambda b, t, tmp: _other_keyring(tmp).sign(_claims(t)), "signed by a key this broker does not know"),
        (lambda b, t, tmp: b.ctx.keyring.sign(_claims(t, iss="http://elsewhere:1")), "issued by another broker URL"),
        (lambda b, t, tmp: "not-a-token", "That is not a Space token"),
    ],
    ids=["signature", "forged-expiry", "audience", "unknown-key", "issuer", "garbage"],
)
def test_bad_tokens_are_refused_each_with_its_own_message(broker, people, token, tmp_path, make_bad, message):
    bad = make_bad(broker, token, tmp_path)
    env = {"PAIR_URL": broker.url}  # the issuer case names an unreachable URL on purpose
    result = bootstrap(people["alice"], tmp_path / "c1", bad, env=env)
    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "c1" / "agent.json").exists()


def _other_keyring(tmp: Path) -> Keyring:
    keyring = Keyring(tmp / "other-keys", retain_seconds=3600)
    keyring.load()
    return keyring


def test_expired_and_not_yet_valid_tokens(broker, people, token, tmp_path):
    alice = people["alice"]
    broker.clock.advance(3600 + 31)
    expired = bootstrap(alice, tmp_path / "c1", token)
    assert expired.code == 1
    assert 'The Space token for "demo" expired at' in expired.err
    assert "pair spaces authorize --space demo" in expired.err

    early = broker.ctx.keyring.sign(
        _claims(token, aud=AUDIENCE, iat=int(broker.clock.now) + 600, nbf=int(broker.clock.now) + 600)
    )
    result = bootstrap(alice, tmp_path / "c2", early)
    assert result.code == 1 and "not valid yet" in result.err
