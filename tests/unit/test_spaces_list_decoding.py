"""The broker's Spaces list is decoded one Space at a time (pair.api.fields.space_from_json,
used by Client.spaces): a Space that does not fit is left out with a warning and never breaks the
others (issue 17, kind 1), and a state a newer broker adds is shown as it is."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from pair.api.client import Client
from pair.api.readiness import ssh_failure

URL = "http://broker.test"


def good(n: int) -> dict[str, Any]:
    return {
        "id": f"sp_good{n}",
        "name": f"good-{n}",
        "owner": "alice@example.com",
        "role": "owner",
        "state": "running",
        "created_at": "2026-11-30T05:00:00Z",
        "updated_at": "2026-11-30T05:00:00Z",
        "container": {"cpus": 2, "login_user": "dev"},
        "ssh": {"serving": False, "reason": "sshd could not start"},
    }


def _set(path: str, value: object) -> Any:
    def corrupt(space: dict[str, Any]) -> Any:
        *outer, last = path.split(".")
        target = space
        for key in outer:
            target = target[key]
        target[last] = value
        return space

    return corrupt


# The tester's inputs and more of the same kind: a field of the wrong shape anywhere in one Space.
CORRUPTIONS = {
    "control character in ssh.reason": _set("ssh.reason", "down\x1b]0;TITLE\x07"),
    "newline in ssh.reason": _set("ssh.reason", "a\nb"),
    "state with a newline": _set("state", "running\nHost *"),
    "state that is not text": _set("state", 3),
    "bad created_at": _set("created_at", "yesterday"),
    "cpus -1": _set("container.cpus", -1),
    "cpus as text": _set("container.cpus", "many"),
    "name breaking the rule": _set("name", "x\nMatch exec id"),
    "id with a space": _set("id", "sp_a b"),
    "unknown role": _set("role", "god"),
    "missing owner": lambda s: {k: v for k, v in s.items() if k != "owner"},
    "not an object": lambda s: ["sp_x"],
    "null": lambda s: None,
}


def spaces_from(items: list[Any]) -> tuple[list[str], list[str]]:
    body = json.dumps(items).encode()
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)))
    warnings: list[str] = []
    client = Client(URL, token="t", http=http, warn=warnings.append)
    return [s.id for s in client.spaces()], warnings


@settings(max_examples=80, deadline=None)
@given(
    goods=st.integers(min_value=0, max_value=3),
    bad=st.lists(st.sampled_from(sorted(CORRUPTIONS)), min_size=1, max_size=3),
    seed=st.randoms(use_true_random=False),
)
def test_a_bad_space_is_left_out_with_one_warning_and_never_breaks_the_others(
    goods: int, bad: list[str], seed: Any
) -> None:
    items = [good(n) for n in range(goods)] + [CORRUPTIONS[kind](good(100 + i)) for i, kind in enumerate(bad)]
    seed.shuffle(items)
    ids, warnings = spaces_from(items)
    assert sorted(ids) == [f"sp_good{n}" for n in range(goods)]
    assert len(warnings) == len(bad)
    for warning in warnings:
        assert warning.startswith("Left out a Space the broker sent")
        assert warning.isprintable(), warning  # nothing from the broker reaches the terminal raw


def test_a_state_from_a_newer_broker_is_kept_as_it_is_and_is_not_running() -> None:
    newer = good(1) | {"state": "hibernating"}
    body = json.dumps([good(0), newer]).encode()
    http = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)))
    spaces = Client(URL, token="t", http=http, warn=lambda m: None).spaces()
    assert [(s.id, s.state) for s in spaces] == [("sp_good0", "running"), ("sp_good1", "hibernating")]
    assert not ssh_failure(spaces[1])  # only a running Space is expected to serve SSH
