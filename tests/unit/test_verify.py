"""`pair verify`: the decision, its fail-closed cases, and that it stays standard-library only."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pair.container import launcher
from pair.printable import printable
from pair.verify import decide, entries, header, render
from pair.verify import main as verify_main

REPO = Path(__file__).resolve().parents[2]
ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx3cQgkzX8VtCh3bGmHnQvz2rQm8D8w3Wc1cmXh2b1R"
BOB = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBExample"
NOW = 1_800_000_000.0


def snapshot(path: Path, *, refreshed_at: float = NOW, max_age: float = 120, login_user: str = "root") -> str:
    keys = [(ALICE, "alice@example.com", "owner"), (BOB, "bob@example.com", "shared")]
    path.write_text(render(login_user, refreshed_at, max_age, "sp_x", "v", keys))
    return str(path)


def test_the_snapshot_reads_back():
    text = render("root", NOW, 120, "sp_x", "v1", [(ALICE, "alice@example.com", "owner")])
    assert header(text) == {
        "login_user": "root",
        "refreshed_at": f"{NOW:.3f}",
        "max_age": "120",
        "space": "sp_x",
        "version": "v1",
    }
    assert entries(text) == [(ALICE, "alice@example.com", "owner")]


def test_a_key_that_is_a_prefix_of_a_listed_one_does_not_match(tmp_path):
    key_type, blob = ALICE.split()
    assert decide("root", blob[:-4], key_type, snapshot(tmp_path / "s"), NOW)[0] is None


def args(key: str) -> tuple[str, str]:
    key_type, blob = key.split()
    return blob, key_type


def test_a_listed_key_gets_one_authorized_keys_line_naming_the_person(tmp_path):
    path = snapshot(tmp_path / "s.json")
    line, why = decide("root", *args(BOB), path, NOW + 5)
    assert line == f"{BOB} bob@example.com (pair: shared)"
    assert why == "bob@example.com (shared)"


@pytest.mark.parametrize(
    ("user", "key", "now", "reason"),
    [
        ("root", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOther", NOW, "key not registered"),
        ("postgres", ALICE, NOW, "logins are as 'root' only"),
        ("root", ALICE, NOW + 121, "snapshot is 121 s old, limit 120 s"),
        ("root", ALICE, NOW - 61, "snapshot is -61 s old"),  # from the future: a clock gone wrong
    ],
    ids=["unknown-key", "other-user", "stale", "future"],
)
def test_everything_else_is_refused_with_a_reason(tmp_path, user, key, now, reason):
    line, why = decide(user, *args(key), snapshot(tmp_path / "s.json"), now)
    assert line is None
    assert reason in why


def test_the_key_type_must_match_too(tmp_path):
    blob, _ = args(ALICE)
    assert decide("root", blob, "ssh-rsa", snapshot(tmp_path / "s.json"), NOW)[0] is None


@pytest.mark.parametrize(
    "content",
    [
        None,
        "",
        "{not json",
        "[]",
        '{"refreshed_at": 1}',
        '{"refreshed_at": "x", "max_age": 1, "login_user": "root", "keys": []}',
    ],
)
def test_no_or_broken_snapshot_lets_nobody_in(tmp_path, content):
    path = tmp_path / "s.json"
    if content is not None:
        path.write_text(content)
    line, why = decide("root", *args(ALICE), str(path), NOW)
    assert line is None
    assert "snapshot" in why


def run_launcher(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    launcher.write(home / "pair")
    return subprocess.run([str(home / "pair"), *argv], capture_output=True, text=True, timeout=30, env={}, check=False)


def test_launcher_verify_finds_its_home_with_an_empty_environment(tmp_path):
    run_launcher(tmp_path, "--version")  # creates home
    snapshot(tmp_path / "home" / "authorized_keys", refreshed_at=time.time())
    allowed = run_launcher(tmp_path, "verify", "root", *args(ALICE))
    assert allowed.returncode == 0
    assert allowed.stdout == f"{ALICE} alice@example.com (pair: owner)\n"
    assert allowed.stderr.startswith("pair verify: allow user=root key=SHA256:")
    denied = run_launcher(tmp_path, "verify", "root", "AAAAC3NzaC1lZDI1NTE5AAAAINope", "ssh-ed25519")
    assert denied.returncode == 0
    assert denied.stdout == ""
    assert "deny" in denied.stderr


def test_launcher_runs_the_cli_for_other_commands(tmp_path):
    result = run_launcher(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("pair ")


def test_verify_imports_only_the_standard_library(tmp_path):
    probe = (
        "import sys; before = set(sys.modules); "
        f"sys.path.insert(0, {str(REPO)!r}); "
        "from pair.verify import main; import io, contextlib; "
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err): main(['root', 'AAAAC3NzaC1lZDI1NTE5AAAAIOther', 'ssh-ed25519'])\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(sorted(m for m in new if m not in sys.stdlib_module_names and m != 'pair'))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe],
        capture_output=True,
        text=True,
        env={"PAIR_HOME": str(tmp_path)},
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("blob", "key_type"),
    [
        ("login_user=root", "#"),  # the issue's: "# login_user=root …" is the header, not a key
        ("pair", "# pair authorized-keys snapshot, written by `pair agent`".split(" ", 1)[0]),
        ("authorized-keys", "pair"),
        ("AAAAC3NzaC1lZDI1NTE5AAAAIGx3cQgkzX8VtCh3bGmHnQvz2rQm8D8w3Wc1cmXh2b1R alice@example.com", "ssh-ed25519"),
        (ALICE.split()[1], "ssh-ed25519\nssh-ed25519"),
        (ALICE.split()[1], ""),
        ("", "ssh-ed25519"),
    ],
    ids=["header-line", "first-line", "first-line-words", "blob-with-space", "type-with-newline", "no-type", "no-blob"],
)
def test_only_a_whole_key_field_of_an_entry_matches(tmp_path, blob, key_type):
    line, why = decide("root", blob, key_type, snapshot(tmp_path / "s"), NOW)
    assert line is None, line
    assert why == "key not registered by anyone this Space is shared with"


def test_the_pip_installed_pair_answers_verify_like_the_launcher(tmp_path):
    snapshot(tmp_path / "authorized_keys", refreshed_at=time.time())
    pair = str(Path(sys.executable).parent / "pair")  # the console script pip writes
    env = {"PAIR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    allowed = subprocess.run([pair, "verify", "root", *args(ALICE)], capture_output=True, text=True, env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == f"{ALICE} alice@example.com (pair: owner)\n"
    assert allowed.stderr.startswith("pair verify: allow user=root key=SHA256:")
    denied = subprocess.run([pair, "verify", "root", "login_user=root", "#"], capture_output=True, text=True, env=env)
    assert (denied.returncode, denied.stdout) == (0, "")
    assert "deny" in denied.stderr


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.text(max_size=40), key_type=st.text(max_size=12))
def test_each_decision_is_one_log_line_whatever_sshd_was_asked(tmp_path, monkeypatch, capsys, user, key_type):
    """Reproduction: `pair verify $'x\\npair verify: allow user=root …'` forged a second log line."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    snapshot(home / "authorized_keys", refreshed_at=time.time(), login_user="root")
    monkeypatch.setenv("PAIR_HOME", str(home))
    verify_main([user, args(ALICE)[0], key_type])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    assert printable(err[:-1]) == err[:-1], repr(err)  # nothing a terminal or log reader would obey
