"""`pair spaces authorize` asking whom to share with: the real `pair` executable in a
pseudo-terminal, against a real `pair-broker serve`. The admin is logged in, and bob and carol are
the teammates offered (sorted by email)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import RealBroker
from tests.support.processes import clean_env, executable
from tests.support.terminal import Terminal, line, tty_env

pytestmark = pytest.mark.tty

BOB = "bob@example.com"
CAROL = "carol@example.com"
READY = re.compile(r'You\'re ready to bootstrap your Space "([^"]+)"\.')
SEED_SCREEN = f"""\
Select users to share your Space with.
↑/↓ to move, space to select, enter to confirm, q to cancel.
2 items
> [ ] {BOB}
  [ ] {CAROL}
↑/k up • ↓/j down • / filter • q quit • ? more"""
SHORT_HELP = SEED_SCREEN.split("\n")[-1]
TOKEN_LINE = "Your Space's token is valid for 1 hour and is available from SPACE_ID.txt."


@dataclass
class User:
    """Someone using the real `pair` CLI from their own config dir."""

    email: str
    config_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return clean_env(PAIR_CONFIG_DIR=str(self.config_dir))

    def pair(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable("pair"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )

    def login(self, url: str, key_file: Path) -> None:
        result = self.pair("login", self.email, "--key-file", str(key_file), "--url", url)
        assert result.returncode == 0, result.stderr

    def spaces(self) -> list[dict[str, object]]:
        result = self.pair("spaces", "list", "--json")
        assert result.returncode == 0, result.stderr
        spaces = json.loads(result.stdout)
        assert isinstance(spaces, list)
        return spaces


@dataclass
class Team:
    admin: User
    bob: User
    carol: User
    cwd: Path
    started: list[Terminal]

    def authorize(self, *args: str) -> Terminal:
        """`pair spaces authorize ARGS` as the admin, in a 24x100 xterm, from `cwd`."""
        term = Terminal(
            executable("pair"),
            ["spaces", "authorize", *args],
            cwd=self.cwd,
            env=tty_env(self.admin.env),
            rows=24,
            cols=100,
        )
        self.started.append(term)
        return term


@pytest.fixture
def team(live_broker: RealBroker, tmp_path: Path):
    keys = tmp_path / "keys"
    keys.mkdir()
    admin = User(live_broker.admin_email, tmp_path / "admin" / "config")
    admin.login(live_broker.url, live_broker.admin_key_file)
    people = {}
    for email in (BOB, CAROL):
        key_file = live_broker.add_user(email, keys)
        person = User(email, tmp_path / email.split("@")[0] / "config")
        person.login(live_broker.url, key_file)
        people[email] = person
    cwd = tmp_path / "work"
    cwd.mkdir()
    team = Team(admin, people[BOB], people[CAROL], cwd, [])
    yield team
    for term in team.started:
        term.close()


def names(spaces: list[dict[str, object]]) -> list[object]:
    return [s["name"] for s in spaces]


def test_space_selects_bob_and_enter_shares_with_him(team: Team):
    term = team.authorize("--name", "demo")
    term.expect_screen(SEED_SCREEN)  # the teammates, sorted by email, the admin not among them
    term.send(" ")  # the cursor starts on the first teammate: bob
    term.expect_screen(line(f"> [x] {BOB}"), line(f"  [ ] {CAROL}"))
    term.send("\r")
    assert term.wait_exit() == 0, term.transcript
    screen = term.display()
    assert 'You\'re ready to bootstrap your Space "demo".' in screen
    assert TOKEN_LINE in screen
    assert "Select users" not in screen  # the prompt erased itself

    token_file = team.cwd / "SPACE_ID.txt"
    assert token_file.is_file()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip()

    owned = team.admin.spaces()
    assert names(owned) == ["demo"]
    assert owned[0]["role"] == "owner"
    shared = team.bob.spaces()
    assert names(shared) == ["demo"]
    assert shared[0]["role"] == "shared"
    assert shared[0]["id"] == owned[0]["id"]
    assert team.carol.spaces() == []


def test_q_cancels_and_creates_nothing(team: Team):
    assert team.admin.spaces() == []
    term = team.authorize()
    term.expect_screen(SEED_SCREEN)
    term.send("q")
    assert term.wait_exit() == 1, term.transcript
    screen = term.display()
    assert line("Cancelled.").search(screen), screen
    assert "You're ready" not in term.transcript
    assert not (team.cwd / "SPACE_ID.txt").exists()
    assert list(team.cwd.iterdir()) == []  # no temporary token file left behind either
    assert team.admin.spaces() == []


def test_filter_then_select_shares_with_carol_only(team: Team):
    term = team.authorize()  # and a generated name
    term.expect_screen(SEED_SCREEN)
    term.send("/")
    term.expect_screen(line("Filter:"))
    term.send("car")
    screen = term.expect_screen(line("Filter: car"), line("1 item"), line(f"> [ ] {CAROL}"))
    assert BOB not in screen
    term.send("\r")  # leave filter mode, keeping the filter
    term.expect_screen(line("Filter: car"), line("1 item"), line(SHORT_HELP))
    term.send(" ")
    term.expect_screen(line(f"> [x] {CAROL}"))
    term.send("\r")
    assert term.wait_exit() == 0, term.transcript
    screen = term.display()
    ready = READY.search(screen)
    assert ready is not None, screen
    name = ready.group(1)
    assert TOKEN_LINE in screen
    assert (team.cwd / "SPACE_ID.txt").is_file()

    assert names(team.admin.spaces()) == [name]
    shared = team.carol.spaces()
    assert names(shared) == [name]
    assert shared[0]["role"] == "shared"
    assert team.bob.spaces() == []
