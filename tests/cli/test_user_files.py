"""Files a person points pair at that are not what they should be: a device, a FIFO, a
directory, something huge or not text. Every such read goes through `pair.files.read_small_text`:
regular files only, a bounded read, one clear error, never a hang or a traceback. And
`pair agent` with a PAIR_HOME it cannot use (a read-only one: tests/integration/test_data_dir.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pair.files import MAX_TEXT
from tests.cli.helpers import assert_error
from tests.support.broker import TEST_URL, InProcessBroker
from tests.support.cli import Person, Result


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)  # nobody writes: opening it for reading would block forever
    return path


def huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.pub"
    path.write_bytes(b"ssh-ed25519 " + b"A" * (MAX_TEXT + 1))
    return path


def not_text(tmp_path: Path) -> Path:
    path = tmp_path / "utf16.key"
    path.write_text("pair_ak_x\n", encoding="utf-16")
    return path


SOURCES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "dev-zero": (lambda tmp: Path("/dev/zero"), "/dev/zero is not a regular file (a device, pipe or socket)"),
    "fifo": (fifo, "is not a regular file (a device, pipe or socket)"),
    "directory": (lambda tmp: tmp, "is a directory"),
    "huge": (huge, "is too large (over 64 KiB)."),
    "utf-16": (not_text, "is not UTF-8 text."),
}
VERBS: dict[str, Callable[[Person, Path], Result]] = {
    "login": lambda p, path: p.pair("login", p.email, "--key-file", str(path), "--url", TEST_URL),
    "keys add": lambda p, path: p.pair("keys", "add", str(path)),
}


@pytest.mark.timeout(30)  # before the fix, the FIFO and /dev/zero hung here
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("verb", VERBS)
def test_a_file_that_is_not_a_small_text_file_is_one_clear_error(
    people: dict[str, Person], tmp_path: Path, verb: str, source: str
) -> None:
    make, message = SOURCES[source]
    result = VERBS[verb](people["bob"], make(tmp_path))
    assert_error(result, message, hint="--key-file" if verb == "login" else ".pub")


@pytest.mark.timeout(30)
def test_a_huge_or_binary_key_on_stdin_is_refused(broker: InProcessBroker, people: dict[str, Person]) -> None:
    bob = people["bob"]
    result = bob.pair("login", bob.email, "--key-file", "-", "--url", TEST_URL, input="\0" * (MAX_TEXT + 10))
    assert_error(result, "The auth key on standard input is too large (over 64 KiB).", hint="--key-file")


def test_a_bom_is_not_part_of_the_key(broker: InProcessBroker, people: dict[str, Person], tmp_path: Path) -> None:
    bob = people["bob"]
    key_file = tmp_path / "bom.key"
    key_file.write_text(broker.keys[bob.email] + "\r\n", encoding="utf-8-sig")  # as Notepad saves it
    assert bob.pair("login", bob.email, "--key-file", str(key_file), "--url", TEST_URL).ok


@pytest.mark.parametrize("state", ["missing", "a file"])
def test_pair_agent_with_an_unusable_pair_home_is_one_clear_error(
    broker: InProcessBroker, people: dict[str, Person], tmp_path: Path, state: str
) -> None:
    home = tmp_path / "pair-home"
    if state == "a file":
        home.write_text("")
    result = people["bob"].pair("agent", env={"PAIR_HOME": str(home)})
    expected = f"PAIR_HOME {home} does not exist." if state == "missing" else f"PAIR_HOME {home} is not a directory."
    assert_error(result, expected, hint="Set PAIR_HOME to the directory install.sh installed pair into")
    assert state != "missing" or not home.exists()  # the agent never creates it
