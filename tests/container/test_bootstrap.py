"""`pair spaces bootstrap` in a container (a temporary PAIR_HOME), against the in-process broker."""

from __future__ import annotations

import base64
import json
import os
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
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
    home = tmp_path / "c1"
    result = bootstrap(people["alice"], home)
    assert result.code == 1
    assert (
        "error: No Space token or key, and this container is not bootstrapped yet (no argument, PAIR_SPACE_TOKEN is "
        f"not set, PAIR_SPACE_KEY is not set, there is no {home}/bootstrap.txt)." in result.err
    )
    assert "hint: Pass the contents of SPACE_ID.txt as `pair spaces bootstrap TOKEN`" in result.err


def test_an_empty_argument_is_named_and_the_hint_is_not_what_was_just_run(people, tmp_path):
    """`pair spaces bootstrap "$(cat SPACE_ID.txt)"` of an empty file: say so, never suggest the same."""
    result = bootstrap(people["alice"], tmp_path / "c1", " \r\n", env={"PAIR_SPACE_TOKEN": ""})
    assert result.code == 1
    assert "(the argument is empty, PAIR_SPACE_TOKEN is empty, PAIR_SPACE_KEY is not set, there is no " in result.err
    assert "$(cat SPACE_ID.txt)" not in result.err and "bootstrap TOKEN" not in result.err


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
    return msgspec.convert(claims, SpaceTokenClaims)


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda b, t, tmp: _tamper(t, 2), "signature does not match"),
        (lambda b, t, tmp: _extend_expiry(t), "signature does not match"),
        (lambda b, t, tmp: b.ctx.keyring.sign(_claims(t, aud="somebody-else")), "not a Space token (wrong audience)"),
        (lambda b, t, tmp: _other_keyring(tmp).sign(_claims(t)), "signed by a key this broker does not know"),
        (lambda b, t, tmp: b.ctx.keyring.sign(_claims(t, iss="http://elsewhere:1")), "issued by another broker URL"),
        (lambda b, t, tmp: "not-a-token", "is not usable: it is cut short (a JWT has three dot-separated parts"),
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


# -- tokens as people paste them (issue 17, kind 2) -------------------------------------------

PASTED: dict[str, Callable[[str], str]] = {
    "crlf": lambda t: t + "\r\n",  # `"$(cat t.txt)"` keeps the CR of a Windows file
    "leading-space-and-lf": lambda t: " " + t + "\n",
    "bom": lambda t: "\ufeff" + t,
    "double-quotes": lambda t: f'"{t}"',
    "export-line": lambda t: f"export PAIR_SPACE_TOKEN='{t}'\n",
}


@pytest.mark.parametrize("where", ["argument", "environment", "bootstrap.txt"])
@pytest.mark.parametrize("paste", sorted(PASTED))
def test_a_token_as_people_paste_it_works_from_every_source(people, token, tmp_path, where, paste):
    alice, home = people["alice"], tmp_path / "c1"
    pasted = PASTED[paste](token)
    if where == "argument":
        result = bootstrap(alice, home, pasted)
    elif where == "environment":
        result = bootstrap(alice, home, env={"PAIR_SPACE_TOKEN": pasted})
    else:
        home.mkdir()
        (home / "bootstrap.txt").write_text(pasted)
        result = bootstrap(alice, home)
    assert result.ok, result.err
    assert result.out.startswith('Bootstrapped this container as the Space "demo"')


def test_a_utf16_bootstrap_txt_is_never_read_when_the_argument_holds_the_token(people, token, tmp_path):
    """Reproduction: the file was read (and crashed on UTF-16) before the argument was looked at."""
    home = tmp_path / "c1"
    home.mkdir()
    (home / "bootstrap.txt").write_bytes(b"\xff\xfe\x00\xd8")  # UTF-16 BOM, then half a surrogate pair
    result = bootstrap(people["alice"], home, token)
    assert result.ok, result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-8-sig"])
def test_a_bootstrap_txt_saved_by_a_windows_editor_is_read(people, token, tmp_path, encoding):
    home = tmp_path / "c1"
    home.mkdir()
    (home / "bootstrap.txt").write_bytes((token + "\r\n").encode(encoding))
    result = bootstrap(people["alice"], home)
    assert result.ok, result.err


def test_an_undecodable_bootstrap_txt_is_named_without_a_traceback(people, token, tmp_path):
    home = tmp_path / "c1"
    home.mkdir()
    (home / "bootstrap.txt").write_bytes(b"\x80" + token.encode())
    result = bootstrap(people["alice"], home)
    assert result.code == 1
    assert f"error: The Space token from {home}/bootstrap.txt is not usable: it is not UTF-8 text" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("make_bad", "cause"),
    [
        (lambda t: t[:60] + " " + t[60:], "it has a space inside (after 60 characters)"),
        (lambda t: t[:100] + "\r\n" + t[100:], "it has a line break inside (after 100 characters)"),
        (lambda t: t.rsplit(".", 1)[0], "it is cut short (a JWT has three dot-separated parts, this has 2)"),
        (lambda t: t[:-3], "it is cut short"),
        (lambda t: "SPACE_ID.txt", "it looks like a file path"),
        (lambda t: "pair_ak_" + "x" * 43, "it is an auth key (pair_ak_…), not a Space token"),
        (lambda t: t[:30] + "…", "it was shortened for display"),
        (lambda t: "'" + t + '"', "it has a quote (') left over"),
    ],
    ids=["space", "line-break", "two-parts", "truncated", "path", "auth-key", "ellipsis", "odd-quotes"],
)
def test_a_pasted_token_that_is_still_not_one_is_refused_with_its_cause(people, token, tmp_path, make_bad, cause):
    home = tmp_path / "c1"
    for args, env, source in (
        ((make_bad(token),), {}, "the command line"),
        ((), {"PAIR_SPACE_TOKEN": make_bad(token)}, "PAIR_SPACE_TOKEN"),
    ):
        result = bootstrap(people["alice"], home, *args, env=env)
        assert result.code == 1
        assert f"error: The Space token from {source} is not usable: {cause}" in result.err
        assert "hint: " in result.err and "Traceback" not in result.err
        assert not (home / "agent.json").exists()


def _post_bootstrap(broker: InProcessBroker, token: str) -> tuple[int, dict[str, str]]:
    # Encoded here, escaping everything (a lone surrogate too), as any client might send it.
    body = json.dumps({"token": token, "instance_id": "inst_api", "facts": {}})
    response = broker.http.post(
        "/api/v1/agent/bootstrap", content=body.encode(), headers={"Content-Type": "application/json"}
    )
    return response.status_code, response.json()


def test_the_broker_normalizes_a_pasted_token_like_the_cli(broker, token):
    status, body = _post_bootstrap(broker, f'\ufeff "{token}"\r\n')
    assert status == 200, body


@pytest.mark.parametrize(
    ("bad", "cause"),
    [
        ("", "it is empty"),
        ("a b.c.d", "it has a space inside"),
        ("pair_ac_" + "x" * 43, "it is a container's agent credential (pair_ac_…)"),
        ("eyJ\udcff", None),  # a lone surrogate (JSON can say it, UTF-8 cannot): refused, never a 500
        ("x" * 20_000, "it is far longer than a Space token"),
        (  # JSON nested 6,000 deep: a RecursionError, not a ValueError, where it is decoded
            "eyJhbGciOiJFZERTQSJ9." + base64.urlsafe_b64encode(b"[" * 6000).decode() + ".AAAA",
            "its second part (the claims) does not decode",
        ),
    ],
    ids=["empty", "space", "agent-credential", "surrogate", "huge", "nested-json"],
)
def test_the_broker_names_why_a_token_is_malformed_and_never_fails(broker, bad, cause):
    status, body = _post_bootstrap(broker, bad)
    assert status in (400, 401, 422), body
    if cause:
        assert status == 401
        assert body["code"] == "token_malformed"
        assert cause in body["message"]
        assert body["detail"]


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "directory"])
def test_a_bootstrap_txt_that_is_not_a_regular_file_is_named_and_never_hangs(people, tmp_path, kind):
    """Reproduction: a FIFO there made bootstrap wait forever, /dev/zero read as "empty"."""
    home = tmp_path / "c1"
    home.mkdir()
    where = home / "bootstrap.txt"
    {"fifo": os.mkfifo, "link to /dev/zero": lambda p: p.symlink_to("/dev/zero"), "directory": Path.mkdir}[kind](where)
    results: list[Result] = []
    worker = threading.Thread(target=lambda: results.append(bootstrap(people["alice"], home)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # the old code: let the blocked open() return before failing
        os.close(os.open(where, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"pair spaces bootstrap hung on a {kind} at bootstrap.txt")
    result = results[0]
    assert result.code == 1, result
    assert result.err.startswith(f"error: {where} is "), result.err
    assert "not a regular file" in result.err or "is a directory" in result.err
    assert "Traceback" not in result.err
