"""The core journey for real: `pair-broker serve` on 127.0.0.1 and a free port, and the real `pair`
executable, each person with their own config directory, each container its own PAIR_HOME."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import jwt
import msgspec
import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from broker.signing import Keyring
from pair.api.models import SpaceTokenClaims
from pair.api.tokens import unverified_claims
from tests.support.broker import RealBroker, real_broker
from tests.support.people import Person
from tests.support.processes import clean_env, executable
from tests.support.tools import need_tool

pytestmark = pytest.mark.integration


@pytest.fixture
def team(live_broker: RealBroker, tmp_path: Path) -> dict[str, Person]:
    return {name: Person(live_broker, name, tmp_path, ssh_key=False) for name in ("alice", "bob", "carol")}


def bootstrap(person: Person, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return person.pair("spaces", "bootstrap", *args, env={"PAIR_HOME": str(home)})


def test_core_journey(live_broker: RealBroker, team: dict[str, Person], tmp_path: Path) -> None:
    alice, bob, carol = team["alice"], team["bob"], team["carol"]
    keygen = need_tool("ssh-keygen")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(alice.dir / "id")], check=True
    )
    assert "alice@laptop (ED25519)" in alice.ok("keys", "add", str(alice.dir / "id.pub"))

    out = alice.ok("spaces", "authorize", "--user", "bob@example.com", "--name", "demo")
    assert out == (
        'You\'re ready to bootstrap your Space "demo".\n'
        "Your Space's token is valid for 1 hour and is available from SPACE_ID.txt.\n"
    )
    token_file = alice.dir / "SPACE_ID.txt"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    claims = msgspec.convert(unverified_claims(token), SpaceTokenClaims)  # every claim, of its type
    assert claims.exp - claims.iat == 3600
    assert claims.iss == live_broker.url

    first, second = tmp_path / "container-1", tmp_path / "container-2"
    done = bootstrap(alice, first, token)
    assert done.returncode == 0, done.stderr
    assert '"demo"' in done.stdout

    [mine] = alice.spaces()
    assert (mine["name"], mine["role"], mine["state"]) == ("demo", "owner", "starting")
    assert [(s["name"], s["role"]) for s in bob.spaces()] == [("demo", "shared")]
    assert carol.spaces() == []

    refused = bootstrap(alice, second, token)
    assert refused.returncode == 1 and "already bootstrapped another container" in refused.stderr
    again = bootstrap(alice, first)  # postAttachCommand: no token at all
    assert again.returncode == 0, again.stderr

    pieces = token.split(".")
    pieces[2] = ("A" if pieces[2][10] != "A" else "B").join((pieces[2][:10], pieces[2][11:]))
    tampered = bootstrap(alice, tmp_path / "container-3", ".".join(pieces))
    assert tampered.returncode == 1 and "signature does not match" in tampered.stderr

    other = Keyring(tmp_path / "other-keys", retain_seconds=3600)
    other.load()
    foreign = other.sign(msgspec.structs.replace(claims, jti="another"))
    refused = bootstrap(alice, tmp_path / "container-4", foreign)
    assert refused.returncode == 1 and "signed by a key this broker does not know" in refused.stderr

    assert alice.ok("spaces", "delete", "--space", "demo", "--yes").startswith('Deleted space "demo"')
    assert alice.spaces() == [] and bob.spaces() == []
    dead = bootstrap(alice, first)
    assert dead.returncode == 1 and "agent credential is no longer valid" in dead.stderr
    assert "Traceback" not in dead.stderr


def test_token_verifies_with_an_independent_jwt_library_from_the_jwks_alone(
    live_broker: RealBroker, team: dict[str, Person]
) -> None:
    alice = team["alice"]
    alice.ok("spaces", "authorize", "--no-share", "--name", "jwks")
    token = (alice.dir / "SPACE_ID.txt").read_text().strip()
    with urllib.request.urlopen(f"{live_broker.url}/.well-known/jwks.json") as response:
        jwks = json.load(response)
    keys = KeySet.import_key_set(jwks)
    with warnings.catch_warnings():
        # RFC 9864 prefers the fully specified "Ed25519" name; docs/tokens.md fixes "EdDSA".
        warnings.simplefilter("ignore", SecurityWarning)
        decoded = jose_jwt.decode(token, keys, algorithms=["EdDSA"])
    assert decoded.header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert decoded.claims["aud"] == "pair:space-bootstrap"
    assert decoded.claims["sub"] == alice.spaces()[0]["id"]


def test_key_rotation_keeps_unexpired_tokens_working(
    live_broker: RealBroker, team: dict[str, Person], tmp_path: Path
) -> None:
    alice = team["alice"]
    alice.ok("spaces", "authorize", "--no-share", "--name", "before", "--output", "before.txt")
    rotated = live_broker.admin("keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    alice.ok("spaces", "authorize", "--no-share", "--name", "after", "--output", "after.txt")
    before, after = ((alice.dir / f).read_text().strip() for f in ("before.txt", "after.txt"))
    assert jwt.get_unverified_header(before)["kid"] != jwt.get_unverified_header(after)["kid"]
    with urllib.request.urlopen(f"{live_broker.url}/.well-known/jwks.json") as response:
        assert len(json.load(response)["keys"]) == 2
    for name, token in (("before", before), ("after", after)):
        result = bootstrap(alice, tmp_path / name, token)
        assert result.returncode == 0, result.stderr


def test_errors_are_json_with_message_and_detail(live_broker: RealBroker) -> None:
    for method, path, body, status in (
        ("GET", "/api/v1/nothing-here", None, 404),
        ("GET", "/api/v1/spaces", None, 401),
        ("POST", "/api/v1/login", b"{not json", 400),
        ("POST", "/api/v1/login", b'{"email": 3}', 422),
    ):
        request = urllib.request.Request(live_broker.url + path, data=body, method=method)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        assert caught.value.code == status
        error = json.load(caught.value)
        assert error["message"].endswith(".") and "detail" in error, error


def test_openapi_documents_every_json_endpoint(live_broker: RealBroker) -> None:
    from pair.api.endpoints import ALL

    with urllib.request.urlopen(f"{live_broker.url}/openapi.json") as response:
        doc = json.load(response)
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {(e.method, e.path) for e in ALL}
    assert doc["paths"]["/api/v1/spaces"]["post"]["requestBody"]


def test_sigterm_stops_the_broker_cleanly(tmp_path: Path) -> None:
    with real_broker(tmp_path / "data") as broker:
        pass  # leaving the block sends SIGTERM and waits
    assert broker.proc.returncode == 0
    assert "Application shutdown complete" in broker.output.text()
    assert broker.output.lines[-1] == "pair broker stopped.\n"


def test_restart_keeps_users_keys_and_spaces(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with real_broker(data) as broker:
        alice = Person(broker, "alice", tmp_path, ssh_key=False)
        alice.ok("spaces", "authorize", "--no-share", "--name", "kept")
        url = broker.url
    port = int(url.rsplit(":", 1)[1])
    with real_broker(data, "--port", str(port)) as again:
        assert again.url == url
        assert [s["name"] for s in alice.spaces()] == ["kept"]
        token = (alice.dir / "SPACE_ID.txt").read_text().strip()
        assert bootstrap(alice, tmp_path / "c", token).returncode == 0  # same signing key after restart


def test_unreachable_broker_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    keyring = Keyring(tmp_path / "keys", retain_seconds=3600)
    keyring.load()
    token = keyring.sign(
        SpaceTokenClaims(
            iss=f"http://127.0.0.1:{port}", aud="pair:space-bootstrap", sub="sp_x", iat=0, nbf=0, exp=2**40, jti="j"
        )
    )
    result = subprocess.run(
        [executable("pair"), "spaces", "bootstrap", token, "--timeout", "1.5"],
        env=clean_env(PAIR_HOME=str(tmp_path / "home")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"error: Cannot reach the broker at http://127.0.0.1:{port}" in result.stderr
    assert "Gave up after 2 s" in result.stderr or "Gave up after 1 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "home" / "instance-id").exists() and not (tmp_path / "home" / "agent.json").exists()
