"""`pair login`, `pair logout`, `pair whoami`, and what every command does without a valid session."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from broker import accounts
from pair.api import client as api_client
from tests.cli.helpers import assert_error, me_status, session_file, session_token, ssh_keygen
from tests.support.broker import TEST_URL, InProcessBroker
from tests.support.cli import Person


@pytest.fixture
def dave(broker: InProcessBroker, tmp_path: Path) -> Person:
    """A user who exists on the broker but has not logged in on this machine yet."""
    broker.add_user("dave@example.com")
    return Person(broker, "dave@example.com", tmp_path / "dave")


def write_key(person: Person, text: str) -> Path:
    path = person.home / "auth.key"
    path.write_text(text)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- login ----------------------------------------------------------------------------------


def test_login_saves_a_private_session_without_the_auth_key(broker: InProcessBroker, dave: Person) -> None:
    key = broker.keys[dave.email]
    result = dave.pair("login", dave.email, "--key-file", str(write_key(dave, key + "\n")), "--url", TEST_URL)

    assert result.ok, result.err
    assert result.out == f"Logged in to {TEST_URL} as dave@example.com.\n"
    assert result.err == ""
    saved = session_file(dave)
    assert saved.parent == dave.config_dir
    assert mode(saved) == 0o600
    assert mode(dave.config_dir) == 0o700
    assert all(mode(p) == 0o600 for p in dave.config_dir.iterdir())
    text = saved.read_text()
    assert key not in text
    assert json.loads(text)["email"] == "dave@example.com"
    assert me_status(broker, session_token(dave)) == 200


def test_login_email_is_case_insensitive(broker: InProcessBroker, dave: Person) -> None:
    key_file = write_key(dave, broker.keys[dave.email])
    result = dave.pair("login", "Dave@Example.COM", "--key-file", str(key_file), "--url", TEST_URL)
    assert result.out == f"Logged in to {TEST_URL} as dave@example.com.\n", result.err


@pytest.mark.parametrize("who", ["wrong key", "someone else's key"])
def test_login_with_a_wrong_key_fails_cleanly_and_saves_nothing(
    broker: InProcessBroker, dave: Person, who: str
) -> None:
    key = "pak_not-a-real-key" if who == "wrong key" else broker.add_user("erin@example.com")
    result = dave.pair("login", dave.email, "--key-file", str(write_key(dave, key)), "--url", TEST_URL)

    assert result.code == 1
    _, hint = assert_error(result, "do not match an account")
    assert hint == "Check the key file your admin gave you; if it is lost, ask your admin for a new key."
    assert "`" not in hint and "pair-broker" not in hint  # words for a person, not an admin command
    assert not session_file(dave).exists()


def test_a_failed_login_keeps_the_existing_session(people: dict[str, Person]) -> None:
    bob = people["bob"]
    token = session_token(bob)
    result = bob.pair("login", bob.email, "--key-file", str(write_key(bob, "pak_wrong")), "--url", TEST_URL)
    assert_error(result, "do not match an account")
    assert session_token(bob) == token
    assert bob.pair("whoami").ok


@pytest.mark.parametrize("args", [("--key-file", "-"), ()], ids=["key-file-dash", "plain-stdin"])
def test_login_reads_the_key_from_stdin(broker: InProcessBroker, dave: Person, args: tuple[str, ...]) -> None:
    result = dave.pair("login", dave.email, *args, "--url", TEST_URL, input=f"  {broker.keys[dave.email]}\n")
    assert result.ok, result.err
    assert result.out == f"Logged in to {TEST_URL} as dave@example.com.\n"
    assert me_status(broker, session_token(dave)) == 200


@pytest.mark.parametrize("source", ["empty file", "empty stdin", "blank stdin"])
def test_login_with_an_empty_key_is_refused_before_asking_the_broker(dave: Person, source: str) -> None:
    if source == "empty file":
        result = dave.pair("login", dave.email, "--key-file", str(write_key(dave, "\n")), "--url", TEST_URL)
    else:
        result = dave.pair("login", dave.email, "--url", TEST_URL, input="" if source == "empty stdin" else " \n\n")
    assert_error(result, "The auth key is empty.", hint="--key-file")
    assert not session_file(dave).exists()


def test_login_with_a_missing_key_file(dave: Person) -> None:
    missing = dave.home / "nope.key"
    result = dave.pair("login", dave.email, "--key-file", str(missing), "--url", TEST_URL)
    assert_error(result, f"Cannot read the key file {missing}", hint="--key-file")
    assert not session_file(dave).exists()


def test_login_without_any_url_says_which_broker(
    broker: InProcessBroker, dave: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAIR_URL", raising=False)
    result = dave.pair("login", dave.email, "--key-file", str(write_key(dave, broker.keys[dave.email])))
    assert_error(result, "Which broker?", hint="--url")
    assert not session_file(dave).exists()


BAD_URLS = {
    "trailing newline": (TEST_URL + "\n", "contains a space, a control character"),
    "ESC": ("http://127.0.0.1\x1b[31m:8000", "contains a space, a control character"),
    "unclosed IPv6": ("http://[::1", "is not a URL (Invalid IPv6 URL)"),
    "port out of range": ("http://127.0.0.1:99999", "is not a URL (Port out of range"),
    "no scheme": ("127.0.0.1:8000", "does not start with http://"),
    "no host": ("http://:8000", "has no host name"),
}


@pytest.mark.parametrize("where", ["--url", "PAIR_URL"])
@pytest.mark.parametrize("kind", sorted(BAD_URLS))
def test_a_broker_url_httpx_would_refuse_is_one_sentence_naming_its_source(
    broker: InProcessBroker, dave: Person, monkeypatch: pytest.MonkeyPatch, kind: str, where: str
) -> None:
    monkeypatch.delenv("PAIR_URL", raising=False)
    url, why = BAD_URLS[kind]
    key_file = str(write_key(dave, broker.keys[dave.email]))
    if where == "--url":
        result = dave.pair("login", dave.email, "--key-file", key_file, "--url", url)
    else:
        result = dave.pair("login", dave.email, "--key-file", key_file, env={"PAIR_URL": url})
    _, hint = assert_error(result, f"The broker URL {url!r} ({where}) {why}")
    assert "https://pair.example.com" in hint
    assert not session_file(dave).exists()


def test_a_saved_url_that_is_not_one_says_to_log_in_again(people: dict[str, Person]) -> None:
    bob = people["bob"]
    path = session_file(bob)
    path.write_text(json.dumps(json.loads(path.read_text()) | {"url": "http://[::1"}))
    _, hint = assert_error(bob.pair("spaces", "list"), f"({path}) is not a URL")
    assert "Log in again with --url." in hint


def test_login_takes_the_url_from_pair_url_then_remembers_it(
    broker: InProcessBroker, dave: Person, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAIR_URL", raising=False)
    key_file = str(write_key(dave, broker.keys[dave.email]))
    first = dave.pair("login", dave.email, "--key-file", key_file, env={"PAIR_URL": TEST_URL + "/"})
    assert first.out == f"Logged in to {TEST_URL} as dave@example.com.\n", first.err
    assert dave.pair("logout").ok
    again = dave.pair("login", dave.email, "--key-file", key_file)  # the URL saved by the first login
    assert again.out == f"Logged in to {TEST_URL} as dave@example.com.\n", again.err


def test_logging_in_again_revokes_the_previous_session(broker: InProcessBroker, people: dict[str, Person]) -> None:
    bob = people["bob"]
    old = session_token(bob)
    bob.login()
    new = session_token(bob)
    assert new != old
    assert me_status(broker, old) == 401
    assert me_status(broker, new) == 200


# -- logout ---------------------------------------------------------------------------------


def test_logout_revokes_the_session_on_the_broker_and_forgets_it(
    broker: InProcessBroker, people: dict[str, Person]
) -> None:
    bob = people["bob"]
    token = session_token(bob)
    result = bob.pair("logout")
    assert result.ok, result.err
    assert result.out == f"Logged out of {TEST_URL}.\n"
    assert not session_file(bob).exists()
    assert me_status(broker, token) == 401
    assert me_status(broker, session_token(people["carol"])) == 200  # only bob's session ended


def test_logout_when_not_logged_in(dave: Person) -> None:
    result = dave.pair("logout")
    assert result.ok
    assert result.out == "You are not logged in.\n"


def test_logout_of_an_expired_session_still_forgets_it(broker: InProcessBroker, people: dict[str, Person]) -> None:
    broker.clock.advance(broker.ctx.settings.session_ttl + 1)
    result = people["bob"].pair("logout")
    assert result.ok, result.err
    assert not session_file(people["bob"]).exists()


def test_logout_with_the_broker_unreachable_forgets_locally_and_says_so(
    people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_client, "http_factory", _unreachable)
    result = people["bob"].pair("logout")
    assert_error(result, "could not revoke it", "Cannot reach the broker", hint="expires by itself")
    assert not session_file(people["bob"]).exists()


# -- whoami ---------------------------------------------------------------------------------


def test_whoami_marks_admins(people: dict[str, Person]) -> None:
    assert people["alice"].pair("whoami").out == f"alice@example.com (admin) on {TEST_URL}\n"
    bob = people["bob"].pair("whoami")
    assert bob.ok
    assert bob.out == f"bob@example.com on {TEST_URL}\n"


def test_whoami_refuses_a_pair_url_other_than_the_session(people: dict[str, Person]) -> None:
    result = people["bob"].pair("whoami", env={"PAIR_URL": "http://elsewhere.example"})
    assert_error(result, f"You are logged in to {TEST_URL}, not http://elsewhere.example", hint="pair login")


def test_an_unreachable_broker_is_an_error_not_a_traceback(
    people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_client, "http_factory", _unreachable)
    result = people["bob"].pair("whoami")
    assert_error(result, f"Cannot reach the broker at {TEST_URL}", hint="broker is running")


def _unreachable(url: str) -> httpx.Client:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.Client(transport=httpx.MockTransport(refuse))


# -- every command needs a valid session ----------------------------------------------------

SIGNED_IN_COMMANDS = [
    ("whoami",),
    ("keys", "list"),
    ("keys", "add", "KEY"),
    ("keys", "remove", "SHA256:abc"),
    ("spaces", "list"),
    ("spaces", "list", "--json"),
    ("spaces", "authorize", "--no-share"),
    ("spaces", "authorize", "--user", "bob@example.com", "--name", "demo"),
    ("spaces", "share", "--space", "demo", "bob@example.com"),
    ("spaces", "unshare", "--space", "demo", "bob@example.com"),
    ("spaces", "delete", "--space", "demo", "--yes"),
]


def _args(person: Person, command: tuple[str, ...]) -> list[str]:
    if "KEY" not in command:
        return list(command)
    pub = ssh_keygen(person.home / "keys" / "id_ed25519")
    return [str(pub) if a == "KEY" else a for a in command]


@pytest.mark.parametrize("command", SIGNED_IN_COMMANDS, ids=" ".join)
def test_commands_when_not_logged_in(dave: Person, command: tuple[str, ...]) -> None:
    result = dave.pair(*_args(dave, command))
    assert result.code == 1
    assert_error(result, "You are not logged in.", hint="pair login")
    assert not (dave.cwd / "SPACE_ID.txt").exists()


@pytest.mark.parametrize("command", SIGNED_IN_COMMANDS, ids=" ".join)
def test_commands_with_an_expired_session(
    broker: InProcessBroker, people: dict[str, Person], command: tuple[str, ...]
) -> None:
    bob = people["bob"]
    broker.clock.advance(broker.ctx.settings.session_ttl + 1)
    result = bob.pair(*_args(bob, command))
    assert_error(result, "your session has expired", hint="pair login")
    assert not (bob.cwd / "SPACE_ID.txt").exists()


@pytest.mark.parametrize("command", SIGNED_IN_COMMANDS, ids=" ".join)
def test_commands_with_a_session_revoked_by_a_key_reset(
    broker: InProcessBroker, people: dict[str, Person], command: tuple[str, ...]
) -> None:
    bob = people["bob"]
    token = session_token(bob)
    broker.run(accounts.reset_key(broker.ctx, bob.email))
    assert me_status(broker, token) == 401
    result = bob.pair(*_args(bob, command))
    assert_error(result, "your session has expired", hint="pair login")


def test_sessions_last_until_their_ttl(broker: InProcessBroker, people: dict[str, Person]) -> None:
    broker.clock.advance(broker.ctx.settings.session_ttl - 120)
    assert people["bob"].pair("whoami").ok
    broker.clock.advance(121)
    assert_error(people["bob"].pair("whoami"), "your session has expired")


def test_a_second_machine_has_its_own_session(
    broker: InProcessBroker, people: dict[str, Person], tmp_path: Path
) -> None:
    laptop = people["bob"]
    desktop = Person(broker, laptop.email, tmp_path / "bob-desktop")
    desktop.login()
    assert laptop.pair("whoami").ok
    assert desktop.pair("logout").ok
    assert laptop.pair("whoami").ok
    assert_error(desktop.pair("whoami"), "You are not logged in.")
