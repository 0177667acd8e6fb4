"""`pair spaces terminal` in a real pseudo-terminal against a real Space container, the idle limit
the broker sets (PAIR_BROKER_TERMINAL_IDLE, short here), and the broker's bound on what a person
may send on a terminal stream."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from websockets.asyncio.client import connect

from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode
from tests.container.conftest import BROKER_ENV, World
from tests.container.test_streams import run, running, url
from tests.support.container import eventually
from tests.support.processes import executable
from tests.support.terminal import CTRL_C, Terminal, tty_env

pytestmark = pytest.mark.integration

IDLE = 2  # seconds


@pytest.fixture
def broker_env() -> dict[str, str]:
    return {**BROKER_ENV, "PAIR_BROKER_TERMINAL_IDLE": str(IDLE)}


def terminals(world: World) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(world.alice.ok("spaces", "terminals", "demo", "--json"))
    return listed


def test_the_cli_runs_a_shell_in_raw_mode_and_exits_with_its_status(world: World) -> None:
    running(world)
    # After pair: its status, and whether the tty is back in canonical mode (not raw).
    script = (
        f"{executable('pair')} spaces terminal demo; echo status=$?; "
        "stty -a | tr ' ' '\\n' | grep -x -e icanon -e -icanon | sed 's/^/mode=/'"
    )
    cli = Terminal("/bin/sh", ["-c", script], cwd=world.alice.dir, env=tty_env(world.alice.env), timeout=30)
    try:
        cli.expect_screen(re.compile(r"pair: terminal term_[a-z2-7]{12} in \"demo\""))
        cli.send("echo $((6*7))\r")
        cli.expect_screen(re.compile(r"^42\s*$", re.MULTILINE))
        cli.send("stty size\r")
        cli.expect_screen(re.compile(r"^24 100\s*$", re.MULTILINE))  # the local window's size
        # Ctrl-C is a byte for the remote shell: it interrupts `sleep`, not pair
        cli.send("sleep 30; echo not-$((0+1))-interrupted\r")
        cli.send(CTRL_C)
        cli.send("echo after-$((1+1))\r")
        cli.expect_screen(re.compile(r"^after-2\s*$", re.MULTILINE))
        assert "not-1-interrupted" not in cli.display()
        listed = terminals(world)
        assert [(t["started_by"], [p["role"] for p in t["people"]]) for t in listed] == [
            (world.alice.email, ["driver"])
        ]
        cli.send("exit 7\r")
        cli.expect_screen("status=7", "mode=icanon")
        assert cli.wait_exit() == 0
    finally:
        cli.close()
    assert "mode=-icanon" not in cli.display()
    eventually(lambda: terminals(world) == [], "the terminal is gone from the listing")


def test_a_terminal_nobody_is_attached_to_is_hung_up_after_the_idle_limit(world: World) -> None:
    space_id = running(world)
    opened = ""

    async def scenario() -> None:
        nonlocal opened
        headers = {"Authorization": f"Bearer {world.alice.session_token}"}
        async with connect(url(world, ep.SPACE_TERMINAL, space_id), additional_headers=headers) as ws:
            hello = tp.decode_server(await ws.recv())
            assert isinstance(hello, tp.Hello)
            opened = hello.terminal_id

    run(scenario())
    eventually(lambda: [t["id"] for t in terminals(world)] == [opened], "the agent lists it")
    agent_log = world.box.log
    line = f"terminal {opened}: nobody attached for {IDLE} s; hanging up"
    eventually(lambda: line in agent_log("pair-agent.log"), "the idle limit hangs it up", timeout=IDLE + 20)
    eventually(lambda: f"terminal {opened}: the shell ended" in agent_log("pair-agent.log"), "its shell ended")
    eventually(lambda: terminals(world) == [], "it is gone from the listing")


def test_the_broker_closes_a_terminal_stream_that_sends_an_oversized_frame(world: World) -> None:
    space_id = running(world)

    async def scenario() -> None:
        headers = {"Authorization": f"Bearer {world.bob.session_token}"}
        async with connect(url(world, ep.SPACE_TERMINAL, space_id), additional_headers=headers, max_size=None) as ws:
            assert isinstance(tp.decode_server(await ws.recv()), tp.Hello)
            await ws.send(b"x" * (tp.MAX_INPUT_BYTES + 1))
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == CloseCode.TOO_BIG
            assert ws.close_reason == "A message on this stream was larger than its protocol allows."

    run(scenario())
    rows = json.loads(world.alice.ok("spaces", "sessions", "demo", "--json"))
    assert rows == []


def test_the_starter_hands_over_the_keyboard_from_the_cli(world: World) -> None:
    space_id = running(world)

    async def scenario() -> None:
        alice = {"Authorization": f"Bearer {world.alice.session_token}"}
        bob = {"Authorization": f"Bearer {world.bob.session_token}"}
        async with connect(url(world, ep.SPACE_TERMINAL, space_id), additional_headers=alice) as started:
            hello = tp.decode_server(await started.recv())
            assert isinstance(hello, tp.Hello)
            joining = url(world, ep.SPACE_TERMINAL, space_id) + f"?join={hello.terminal_id}"
            async with connect(joining, additional_headers=bob) as joined:
                seen = tp.decode_server(await joined.recv())
                assert isinstance(seen, tp.Hello) and seen.role == "viewer"

                async def role_of_bob() -> tp.Role:
                    while True:
                        frame = await joined.recv()
                        if isinstance(frame, str) and isinstance(message := tp.decode_server(frame), tp.RoleChanged):
                            return message.role

                args = ("spaces", "terminal-role", "demo", hello.terminal_id, world.bob.email)
                done = await asyncio.to_thread(world.alice.ok, *args, "driver")
                assert done == f"{world.bob.email} may type in {hello.terminal_id} now.\n"
                assert await asyncio.wait_for(role_of_bob(), 10) == "driver"
                refused = await asyncio.to_thread(world.bob.pair, *args, "viewer")
                assert refused.returncode == 1
                assert f"Only {world.alice.email}, who started this terminal, decides who may type." in refused.stderr
                await asyncio.to_thread(world.alice.ok, *args, "viewer")
                assert await asyncio.wait_for(role_of_bob(), 10) == "viewer"
                listed = await asyncio.to_thread(terminals, world)
                assert [t["drivers"] for t in listed] == [[world.alice.email]]

    run(scenario())
