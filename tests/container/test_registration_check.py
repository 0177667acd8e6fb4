"""POST /api/v1/agent/registration-check (what install.sh asks before it installs): for every state
a Space token or key can be in, the check answers what bootstrap answers (the same status, code,
sentence and hint, or success) and uses nothing up. Against the in-process broker; install.sh's
side is tests/install/test_install_check.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pair.api.tokens import space_key
from tests.cli.helpers import assert_error
from tests.support.broker import InProcessBroker
from tests.support.cli import Person, Result

CHECK = "/api/v1/agent/registration-check"


def check(broker: InProcessBroker, kind: str, secret: str, instance_id: str | None = None) -> tuple[int, Any]:
    body: dict[str, object] = {"kind": kind, "secret": secret}
    if instance_id is not None:
        body["instance_id"] = instance_id
    answer = broker.http.post(CHECK, json=body)
    return answer.status_code, answer.json()


def boot(person: Person, home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return person.pair("spaces", "bootstrap", *args, env={"PAIR_HOME": str(home), "CODESPACE_NAME": "c", **(env or {})})


def bootstrap_answer(broker: InProcessBroker, kind: str, secret: str) -> tuple[int, Any]:
    """What the broker's bootstrap endpoint answers a new container with `secret`."""
    container = {"instance_id": "inst_new", "facts": {}}
    if kind == "space_key":
        answer = broker.http.post(
            "/api/v1/agent/bootstrap-key", json={"space_key": secret, "container_name": "c", **container}
        )
    else:
        answer = broker.http.post("/api/v1/agent/bootstrap", json={"token": secret, **container})
    return answer.status_code, answer.json()


def agrees(broker: InProcessBroker, kind: str, secret: str, code: str) -> str:
    """The check refuses `secret` as bootstrap then does, in the same words (the check first: it
    must leave the secret as it was); the sentence."""
    checked = check(broker, kind, secret)
    assert checked[0] >= 400 and checked[1]["code"] == code, checked
    assert bootstrap_answer(broker, kind, secret) == checked
    return str(checked[1]["message"])


def key_of(person: Person, *args: str) -> str:
    made = person.pair("spaces", "keys", "create", *args)
    assert made.ok, made.err
    return made.out.strip()


def token_of(person: Person, name: str) -> str:
    made = person.pair("spaces", "authorize", "--no-share", "--name", name, "--output", f"{name}.txt")
    assert made.ok, made.err
    return (person.cwd / f"{name}.txt").read_text().strip()


def revoked_key(person: Person, broker: InProcessBroker) -> str:
    key = key_of(person, "--name", "gone")
    assert person.pair("spaces", "keys", "revoke", "gone").ok
    return key


def expired_key(person: Person, broker: InProcessBroker) -> str:
    key = key_of(person, "--name", "late", "--expires", "1h")
    broker.clock.advance(3601)
    return key


KEY_STATES: dict[str, tuple[Callable[[Person, InProcessBroker], str], str]] = {
    "revoked": (revoked_key, "space_key_revoked"),
    "expired": (expired_key, "space_key_expired"),
    "unknown": (lambda p, b: space_key("http://testserver", "u" * 43), "space_key_unknown"),
    "malformed": (lambda p, b: "pair_sk_" + "x" * 10, "space_key_malformed"),
    "a token": (lambda p, b: token_of(p, "t"), "space_key_malformed"),
}


@pytest.mark.parametrize("state", sorted(KEY_STATES))
def test_a_key_bootstrap_refuses_is_refused_by_the_check_in_the_same_words(
    people: dict[str, Person], broker: InProcessBroker, tmp_path: Path, state: str
) -> None:
    alice = people["alice"]
    make, code = KEY_STATES[state]
    key = make(alice, broker)
    agrees(broker, "space_key", key, code)
    if state in ("revoked", "expired"):  # and the sentence is the one a person sees from bootstrap
        message, _ = assert_error(boot(alice, tmp_path / "c", "--key", key))
        assert message == check(broker, "space_key", key)[1]["message"]


def test_a_usable_key_is_named_and_nothing_is_used(people: dict[str, Person], broker: InProcessBroker, tmp_path: Path):
    alice = people["alice"]
    key = key_of(alice, "--name", "shop")
    assert check(broker, "space_key", f' "{key}"\r\n') == (
        200,
        {"owner": alice.email, "space_name": None, "space_key_name": "shop"},
    )
    listed = alice.pair("spaces", "keys", "list", "--json")
    assert '"uses": 0' in listed.out and '"last_used_at": null' in listed.out
    assert boot(alice, tmp_path / "c", env={"PAIR_SPACE_KEY": key}).ok


def test_tokens_as_bootstrap_judges_them(people: dict[str, Person], broker: InProcessBroker, tmp_path: Path) -> None:
    alice = people["alice"]
    fresh = token_of(alice, "box")
    assert check(broker, "space_token", fresh) == (
        200,
        {"owner": alice.email, "space_name": "box", "space_key_name": None},
    )

    # Used by one container: refused for any other, as bootstrap refuses it; not for that one.
    first = tmp_path / "first"
    assert boot(alice, first, fresh).ok
    agrees(broker, "space_token", fresh, "token_used")
    instance = (first / "instance-id").read_text().strip()
    assert check(broker, "space_token", fresh, instance)[0] == 200

    gone = token_of(alice, "gone")
    assert alice.pair("spaces", "delete", "gone", "--yes").ok
    agrees(broker, "space_token", gone, "space_deleted")
    late = token_of(alice, "late")
    broker.clock.advance(3 * 3600)
    message = agrees(broker, "space_token", late, "token_expired")
    assert message.startswith('The Space token for "late" expired at ')
    agrees(broker, "space_token", "a.b.c", "token_malformed")
    agrees(broker, "space_token", key_of(alice, "--name", "k"), "token_malformed")


def test_the_check_is_in_the_openapi_document_as_the_agent_s(broker: InProcessBroker) -> None:
    operation = broker.http.get("/openapi.json").json()["paths"][CHECK]["post"]
    assert operation["tags"] == ["agent"] and not operation.get("security")
