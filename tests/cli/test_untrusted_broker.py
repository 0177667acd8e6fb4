"""What the CLI does with a broker's answers it must not trust: a Space whose name, id, login user
or host keys do not fit pair.api.grammar is left out with a warning (never written into an ssh
config, known_hosts or an ssh argument), and the other Spaces still work. The broker's database is
changed behind its back, as a hostile broker, or anyone between the CLI and an http:// one, would."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pair.cli.output import table
from pair.runner import error
from tests.cli.helpers import assert_error, authorize, space_id, ssh_keygen
from tests.support.broker import InProcessBroker
from tests.support.cli import Person
from tests.support.tools import need_tool


def host_key(path: Path) -> str:
    return " ".join(ssh_keygen(path, comment="root@space").read_text().split()[:2])


def tamper(
    broker: InProcessBroker,
    sid: str,
    *,
    name: str | None = None,
    facts: dict[str, object] | None = None,
    state: str | None = None,
) -> None:
    """Change a Space's row in the broker's database directly (the broker itself refuses such values)."""
    with sqlite3.connect(broker.ctx.settings.database_path) as db:
        if state is not None:
            db.execute("UPDATE spaces SET state = ? WHERE id = ?", (state, sid))
        if name is not None:
            db.execute("UPDATE spaces SET name = ? WHERE id = ?", (name, sid))
        if facts is not None:
            db.execute("UPDATE spaces SET facts = ? WHERE id = ?", (json.dumps(facts), sid))


@pytest.fixture
def two_spaces(people: dict[str, Person], broker: InProcessBroker, tmp_path: Path) -> tuple[str, str, str]:
    """alice's "good" and "evil", both with a real host key; returns (good id, evil id, good's key)."""
    alice = people["alice"]
    ids = []
    for name in ("good", "evil"):
        authorize(alice, "--no-share", "--name", name)
        ids.append(space_id(alice, name))
    good_key = host_key(tmp_path / "keys" / "good")
    tamper(broker, ids[0], facts={"login_user": "dev", "host_keys": [good_key]})
    tamper(broker, ids[1], facts={"login_user": "dev", "host_keys": [host_key(tmp_path / "keys" / "evil")]})
    return ids[0], ids[1], good_key


def ssh_g(person: Person, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need_tool("ssh"), "-G", "-F", str(person.home / ".ssh" / "config"), host],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(person.home)},
        check=False,
    )


def test_a_space_name_that_would_run_a_command_on_every_ssh_is_left_out(
    people: dict[str, Person], broker: InProcessBroker, two_spaces: tuple[str, str, str], tmp_path: Path
) -> None:
    alice = people["alice"]
    good, evil, _ = two_spaces
    pwned = tmp_path / "PWNED"
    tamper(broker, evil, name=f'x\nMatch exec "touch {pwned}"\nHost y')

    result = alice.pair("spaces", "ssh-config")
    assert result.ok, result.err
    assert result.err.startswith(f"warning: Left out a Space the broker sent ('{evil}', 'x\\nMatch exec ")
    assert "breaks the Space name rule" in result.err
    managed = (alice.config_dir / "ssh_config").read_text()
    assert "Match" not in managed and evil not in managed
    assert f"Host good.pair {good}.pair\n" in managed

    for host in ("good.pair", "github.com"):  # ssh -G evaluates `Match exec`: it would run the command
        assert ssh_g(alice, host).returncode == 0
    assert not pwned.exists()
    assert ssh_g(alice, "good.pair").stdout.count("user dev\n") == 1

    listed = alice.pair("spaces", "list")
    assert listed.ok and "good" in listed.out and evil not in listed.out
    assert "warning: Left out a Space" in listed.err


def test_host_keys_with_a_revoked_marker_never_reach_known_hosts(
    people: dict[str, Person], broker: InProcessBroker, two_spaces: tuple[str, str, str], tmp_path: Path
) -> None:
    alice = people["alice"]
    good, evil, good_key = two_spaces
    marker = f"{good_key}\n@revoked * {good_key}"  # the issue's: an extra line that revokes another Space's key
    tamper(broker, evil, facts={"login_user": "dev", "host_keys": [marker]})

    result = alice.pair("spaces", "ssh-config")
    assert result.ok, result.err
    assert "warning: Left out a Space the broker sent" in result.err and "is not an SSH host key" in result.err
    known = (alice.config_dir / "known_hosts").read_text()
    assert known == f"{good}.pair {good_key}\n"
    found = subprocess.run(
        [need_tool("ssh-keygen"), "-F", f"{good}.pair", "-f", str(alice.config_dir / "known_hosts")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert found.returncode == 0 and "@revoked" not in found.stdout


def test_a_login_user_with_a_newline_breaks_only_its_own_space(
    people: dict[str, Person], broker: InProcessBroker, two_spaces: tuple[str, str, str]
) -> None:
    alice = people["alice"]
    good, evil, good_key = two_spaces
    tamper(broker, evil, facts={"login_user": "dev\n    ProxyCommand sh -c id", "host_keys": [good_key]})
    result = alice.pair("spaces", "ssh-config")
    assert result.ok, result.err
    assert "its container's facts: 'dev\\n    ProxyCommand sh -c id' is not a POSIX user name" in result.err
    assert result.out.startswith(f"good.pair -> {good} ")
    assert "Wrote 1 host to" in result.out
    assert ssh_g(alice, "good.pair").returncode == 0


def test_connect_refuses_a_space_it_cannot_trust_by_name(
    people: dict[str, Person], broker: InProcessBroker, two_spaces: tuple[str, str, str]
) -> None:
    alice = people["alice"]
    _, evil, _ = two_spaces
    tamper(broker, evil, facts={"login_user": "-oProxyCommand=id"})
    result = alice.pair("spaces", "connect", evil)
    lines = result.err.splitlines()
    assert lines[0].startswith("warning: Left out a Space the broker sent")
    assert_error(
        type(result)(result.code, result.out, "\n".join(lines[1:]) + "\n"), f"No Space you can see is called '{evil}'"
    )


def test_error_lines_and_table_cells_reach_the_terminal_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    error("The Space \x1b]0;owned\x07 was deleted.", "Ask \u202eyrrab\u202c.")
    table_text = table(("email", "from"), [("eve\x1b[2J@example.com", "10.0.0.1\r\nINJECTED")])
    err = capsys.readouterr().err
    assert err == "error: The Space \\x1b]0;owned\\x07 was deleted.\nhint: Ask \\u202eyrrab\\u202c.\n"
    assert table_text.splitlines()[1] == "eve\\x1b[2J@example.com  10.0.0.1\\r\\nINJECTED"


# (cpus -1, a bad created_at or ssh.reason cannot be planted here: this broker re-checks them on the
# way out; tests/unit/test_spaces_list_decoding.py sends them from a fake broker.)
@pytest.mark.parametrize("state", ["running\x1b]0;TITLE\x07", "running\nHost *"])
def test_one_space_of_an_unknown_shape_breaks_only_itself(
    people: dict[str, Person], broker: InProcessBroker, two_spaces: tuple[str, str, str], state: str
) -> None:
    alice = people["alice"]
    _, evil, _ = two_spaces
    tamper(broker, evil, state=state)
    for command in (("spaces", "list"), ("spaces", "ssh-config")):
        result = alice.pair(*command)
        assert result.ok, result.err
        assert result.err.startswith(f"warning: Left out a Space the broker sent ('{evil}', 'evil'): "), result.err
        assert "Invalid enum value" in result.err and "\x1b" not in result.err
        assert "good" in result.out and evil not in result.out


def test_a_state_a_newer_broker_adds_is_shown_as_it_is(
    people: dict[str, Person], broker: InProcessBroker, two_spaces: tuple[str, str, str]
) -> None:
    alice = people["alice"]
    _, evil, _ = two_spaces
    tamper(broker, evil, state="hibernating")
    result = alice.pair("spaces", "list")
    assert result.ok and result.err == "", result.err
    assert any(evil in line and "hibernating" in line for line in result.out.splitlines()), result.out
    assert "not running (hibernating)" in alice.pair("spaces", "connect", "evil").err
