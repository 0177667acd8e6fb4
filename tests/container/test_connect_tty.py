"""`pair spaces connect` as a person uses it: a real terminal, an interactive shell prompt in the
Space, and the shell closing under them when the owner unshares."""

from __future__ import annotations

import time

import pytest

from tests.container.conftest import World
from tests.support.container import eventually
from tests.support.processes import executable
from tests.support.terminal import Terminal, line, tty_env

pytestmark = [pytest.mark.integration, pytest.mark.tty]


def test_bob_gets_a_shell_prompt_and_it_closes_when_alice_unshares(world: World) -> None:
    eventually(lambda: world.alice.state("demo") == "running", "the Space is running")
    bob = world.bob
    env = tty_env(bob.env, PS1="space$ ")
    term = Terminal(
        executable("pair"),
        [
            "spaces",
            "connect",
            "demo",
            "--",
            "-i",
            str(bob.key),
            "-o",
            "IdentitiesOnly=yes",
            "-t",
            "env PS1='space$ ' bash --norc -i",
        ],
        cwd=bob.dir,
        env=env,
    )
    try:
        term.expect_screen(line("space$"))
        term.send("echo $((6 * 7))\r")
        term.expect_screen(line("42"))
        world.alice.ok("spaces", "unshare", "--space", "demo", bob.email)
        unshared = time.monotonic()
        assert term.wait_exit() == 255
        assert time.monotonic() - unshared < 2  # the acceptance promise: within 2 seconds
        assert f"{world.alice.email} stopped sharing" in term.transcript
    finally:
        term.close()
