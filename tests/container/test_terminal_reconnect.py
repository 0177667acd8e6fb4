"""`pair spaces terminal` in a real pseudo-terminal across a broker restart: it joins the same
terminal again by itself (same shell, same state), redraws from the scrollback without repeating
it, and ends for good, in one sentence, when the person's access ended while it was away; Ctrl-C
while it waits ends it cleanly."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.container.conftest import World
from tests.container.test_streams import running
from tests.support.broker import real_broker
from tests.support.container import eventually
from tests.support.processes import executable
from tests.support.terminal import CTRL_C, Terminal, tty_env

pytestmark = pytest.mark.integration

WAITING = re.compile(r"pair: Disconnected; reconnecting in \d+ s\u2026 \(Ctrl-C to stop\)")
STARTED = re.compile(r"pair: terminal (term_[a-z2-7]{12}) in \"demo\"")
# After pair: its status, and whether the tty is back in canonical mode (not raw).
AFTER = "echo status=$?; stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon | sed 's/^/mode=/'"


def cli(world: World, who: str, *args: str) -> Terminal:
    person = world.alice if who == "alice" else world.bob
    script = f"{executable('pair')} spaces terminal demo {' '.join(args)}; {AFTER}"
    return Terminal("/bin/sh", ["-c", script], cwd=person.dir, env=tty_env(person.env), timeout=45)


def stop_broker(world: World) -> str:
    """Stop the broker (SIGTERM: it closes streams with 1012); its port, to start it again there."""
    port = world.broker.url.rsplit(":", 1)[1]
    world.broker.proc.terminate()
    assert world.broker.proc.wait(15) == 0
    return port


def test_the_cli_joins_its_terminal_again_after_a_broker_restart(world: World, broker_env: dict[str, str]) -> None:
    running(world)
    alice = cli(world, "alice")
    try:
        alice.expect_screen(STARTED)
        alice.send("export X=kept-$((40+2)); echo marker-$((1+1)); echo $$ > /tmp/pid-before\r")
        alice.expect_screen(re.compile(r"^marker-2\s*$", re.MULTILINE))
        port = stop_broker(world)
        alice.expect_screen(WAITING)
        with real_broker(world.broker.data_dir, "--port", port, env=broker_env):
            alice.expect_screen("pair: Reconnected.")
            # redrawn from the scrollback on a clean screen: the earlier output once, not twice
            # (the scrollback follows the agent's hello, which the line above answers: await it)
            alice.expect_screen(re.compile(r"^marker-2\s*$", re.MULTILINE))
            shown = alice.display().splitlines()
            assert [line.strip() for line in shown].count("marker-2") == 1, alice.display()
            # the same shell: its variables, its PID; and the starter types again (a driver)
            alice.send('echo "x=$X same=$(( $$ == $(cat /tmp/pid-before) ))"\r')
            alice.expect_screen(re.compile(r"^x=kept-42 same=1\s*$", re.MULTILINE))
            alice.send("stty size\r")
            alice.expect_screen(re.compile(r"^24 100\s*$", re.MULTILINE))  # the window's size, sent again
            alice.send("exit 3\r")
            alice.expect_screen("status=3", "mode=icanon")
            assert alice.wait_exit() == 0
    finally:
        alice.close()
    assert "Traceback" not in alice.transcript


def test_access_ended_while_disconnected_ends_the_cli_and_ctrl_c_stops_waiting(
    world: World, broker_env: dict[str, str]
) -> None:
    running(world)
    alice = cli(world, "alice")
    bob: Terminal | None = None
    agent_pid = int(world.box.ctl("pid", "pair-agent").stdout.strip())
    stopped = False
    try:
        terminal_id = STARTED.search(alice.expect_screen(STARTED))
        assert terminal_id is not None
        bob = cli(world, "bob", "--join", terminal_id.group(1), "--read-only")
        bob.expect_screen("you watch (read-only)")
        port = stop_broker(world)
        os.kill(agent_pid, signal.SIGSTOP)  # the container does not come back: attempts keep failing
        stopped = True
        with real_broker(world.broker.data_dir, "--port", port, env=broker_env):
            bob.expect_screen(WAITING)
            alice.expect_screen(WAITING)
            world.alice.ok("spaces", "unshare", "--space", "demo", world.bob.email)
            # bob's next attempt is refused for good: one sentence, no retry loop
            bob.expect_screen("pair: The terminal cannot be joined again: The Space", "status=1", "mode=icanon")
            assert bob.wait_exit() == 0
            # Ctrl-C while alice waits: she stops, her tty restored; the shell goes on
            alice.send(CTRL_C)
            alice.expect_screen("pair: stopped by Ctrl-C; the shell goes on in the Space", "status=130", "mode=icanon")
            assert alice.wait_exit() == 0
            os.kill(agent_pid, signal.SIGCONT)
            stopped = False
            eventually(
                lambda: terminal_id.group(1) in world.alice.ok("spaces", "terminals", "demo"),
                "the shell still runs in the Space",
                timeout=30,
            )
    finally:
        if stopped:
            os.kill(agent_pid, signal.SIGCONT)
        alice.close()
        if bob is not None:
            bob.close()
    for screen in (alice, bob):
        assert screen is not None
        assert "Traceback" not in screen.transcript
        assert "mode=-icanon" not in screen.display()
    assert len(WAITING.findall(bob.transcript)) >= 1
