"""`pair-broker audit`: the audit log, read next to a live `pair-broker serve`."""

from __future__ import annotations

import getpass
import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.broker import RealBroker
from tests.support.people import Person

pytestmark = pytest.mark.integration


def test_audit_shows_who_did_what_to_which_space(live_broker: RealBroker, tmp_path: Path) -> None:
    alice, _, _ = (Person(live_broker, name, tmp_path, ssh_key=False) for name in ("alice", "bob", "carol"))
    alice.ok("spaces", "authorize", "--user", "carol@example.com", "--name", "demo")
    alice.ok("spaces", "share", "--space", "demo", "bob@example.com")
    alice.ok("spaces", "delete", "--space", "demo", "--yes")
    result = live_broker.admin("audit", "--action", "space", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["action"] for e in entries] == [
        "space.create",
        "space.share",  # with carol, as it was created
        "space.token",
        "space.share",  # with bob, later
        "space.delete",
    ]
    demo = entries[0]["target"]
    assert demo.startswith("sp_")
    assert all(e["actor"] == "alice@example.com" and e["target"] == demo for e in entries)
    assert [e["detail"] for e in entries if e["action"] != "space.token"] == [
        "demo, no template",  # this broker has none
        "carol@example.com",
        "bob@example.com",
        "demo",
    ]
    assert entries[0]["at"].endswith("Z")

    table = live_broker.admin("audit", "--target", demo, "--limit", "2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 2
    assert "space.share" in lines[0] and "bob@example.com" in lines[0]
    assert "space.delete" in lines[1] and demo in lines[1]

    sessions = live_broker.admin("audit", "--actor", "bob@example.com", "--action", "session", "--json")
    assert [e["action"] for e in json.loads(sessions.stdout)] == ["session.create"]
    # People were added with `pair-broker users add` on the server: the log names its OS account.
    added = json.loads(live_broker.admin("audit", "--action", "user.create", "--json").stdout)
    by = {e["target"]: e["actor"] for e in added}
    assert by["bob@example.com"] == by["carol@example.com"] == f"pair-broker:{getpass.getuser()}"


def test_audit_with_nothing_to_show_says_so_on_stderr(live_broker: RealBroker) -> None:
    result = live_broker.admin("audit", "--actor", "nobody@example.com")
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr.strip() == "No audit entries match."


def test_audit_refuses_a_since_that_is_not_a_duration(live_broker: RealBroker) -> None:
    result = live_broker.admin("audit", "--since", "yesterday")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "error: --since: 'yesterday' is not a duration."
    assert result.stderr.splitlines()[1].startswith("hint: Use forms like 1h")
    assert "Traceback" not in result.stderr


def test_audit_prints_what_containers_and_people_wrote_as_text(live_broker: RealBroker) -> None:
    # A row from before the broker checked container facts: the host name, and a bidi override.
    with sqlite3.connect(live_broker.data_dir / "broker.db") as db:
        db.execute(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (int(time.time()), "agent:sp_x\u202e", "space.bootstrap", "sp_x", "h\x1b]0;TITLE\x07\x1b[31mRED"),
        )
    table = live_broker.admin("audit", "--action", "space.bootstrap")
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("\n") == 1
    assert "\x1b" not in table.stdout and "\x07" not in table.stdout and "\u202e" not in table.stdout
    assert table.stdout.rstrip().endswith("agent:sp_x\\u202e  space.bootstrap  sp_x  h\\x1b]0;TITLE\\x07\\x1b[31mRED")
    as_json = json.loads(live_broker.admin("audit", "--action", "space.bootstrap", "--json").stdout)
    assert as_json[0]["detail"] == "h\x1b]0;TITLE\x07\x1b[31mRED"  # JSON escapes it itself, exactly
