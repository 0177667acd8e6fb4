"""`pair spaces init`'s two prompts, through a real pseudo-terminal and the real `pair` executable:
which configuration to create in an empty project, and the Space key for the Codespaces secret
(typed hidden, handed to a fake `gh` on its standard input)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pair.api.tokens import space_key
from tests.support import fake_gh
from tests.support.broker import real_broker
from tests.support.people import Person
from tests.support.processes import clean_env, executable
from tests.support.terminal import Terminal, tty_env

pytestmark = pytest.mark.tty

KEY = space_key("https://pair.example.com", "7f3a9c2e41b84d0f9a6e5c3b2d1f0e9a7f3a9c2e41b")


def init(project: Path, path: str, *args: str) -> Terminal:
    env = tty_env(clean_env(PATH=path, HOME=str(project.parent)))
    return Terminal(executable("pair"), ["spaces", "init", *args], cwd=project, env=env)


def test_an_empty_project_asks_which_configuration_to_create(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    term = init(project, str(fake_gh.tools_dir(tmp_path / "tools")), "--no-secret")
    try:
        term.expect_screen(
            "This folder has no devcontainer.json and no devfile.yaml. pair can create either:",
            "  1. devcontainer: .devcontainer/devcontainer.json",
            "  2. devfile: devfile.yaml (Eclipse Che, OpenShift Dev Spaces, AWS CodeCatalyst)",
            "Which one [devcontainer]:",
        )
        term.send("compose\r")
        term.expect_screen("Answer 1, 2, devcontainer, devfile.")
        term.send("2\r")
        term.expect_screen("Created devfile.yaml with pair set up.")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert (project / "devfile.yaml").is_file()
    assert not (project / ".devcontainer").exists()


def test_the_space_key_is_typed_hidden_and_reaches_gh_on_stdin_only(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    gh = fake_gh.install(tmp_path / "bin", repo="octo/shop")
    term = init(project, gh.path(), "devcontainer")
    try:
        term.expect_screen(
            "Created .devcontainer/devcontainer.json with pair set up.",
            "A Space key to store as the Codespaces secret PAIR_SPACE_KEY of octo/shop (Enter skips):",
        )
        term.send(KEY + "\r")
        term.expect_screen("Set the Codespaces secret PAIR_SPACE_KEY of octo/shop")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert KEY not in term.transcript  # not echoed
    [secret_set] = [c for c in gh.calls() if c["args"][:2] == ["secret", "set"]]
    assert secret_set == {
        "args": ["secret", "set", "PAIR_SPACE_KEY", "--app", "codespaces", "--repo", "octo/shop"],
        "stdin": KEY,
    }


def test_enter_skips_the_secret_and_prints_the_command(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    gh = fake_gh.install(tmp_path / "bin", repo="octo/shop")
    term = init(project, gh.path(), "devcontainer")
    try:
        term.expect_screen("(Enter skips):")
        term.send("\r")
        term.expect_screen("  gh secret set PAIR_SPACE_KEY --app codespaces --repo octo/shop < KEY_FILE")
        assert term.wait_exit() == 0
    finally:
        term.close()
    assert not any(c["args"][:2] == ["secret", "set"] for c in gh.calls())


def test_signed_in_it_offers_to_make_a_space_key_and_stores_it_with_gh(tmp_path: Path) -> None:
    with real_broker(tmp_path / "broker") as broker:
        alice = Person(broker, "alice", tmp_path / "people", ssh_key=False)
        project = tmp_path / "shop"
        project.mkdir()
        gh = fake_gh.install(tmp_path / "bin", repo="octo/shop")
        env = tty_env(clean_env(PATH=gh.path(), HOME=str(alice.dir), PAIR_CONFIG_DIR=alice.env["PAIR_CONFIG_DIR"]))
        term = Terminal(executable("pair"), ["spaces", "init", "devcontainer"], cwd=project, env=env)
        try:
            term.expect_screen(
                "Make a new Space key and store it as the Codespaces secret PAIR_SPACE_KEY of octo/shop",
                "[Y/n]:",
            )
            term.send("\r")
            term.expect_screen('Made the Space key "octo-shop"')
            assert term.wait_exit() == 0
        finally:
            term.close()
        [secret_set] = [c for c in gh.calls() if c["args"][:2] == ["secret", "set"]]
        key = secret_set["stdin"]
        assert key.startswith("pair_sk_") and key not in term.transcript
        assert "octo-shop" in alice.ok("spaces", "keys", "list")
