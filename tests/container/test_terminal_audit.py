"""The terminal's audit rows against a real broker and a real Space container (issue 11).

Reproductions of a tester's findings: `terminal.role` was written when the starter *sent* a grant,
so a refused one (alice making herself a viewer), a repeated one (a flood) or one naming a text
with terminal escapes was logged as done; a grant's email was checked nowhere; `terminal.open` and
`terminal.join` named the stream, not the terminal, and a join to a terminal that does not exist
was logged as a join; a grant to a person who cannot reach the Space (not shared, or no user)
was carried out, so they would type once shared; `pair spaces terminal-role` was audited as the
starter joining and leaving."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from websockets.asyncio.client import ClientConnection, connect

from broker.terminals import BAD_GRANT, no_reach
from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode
from tests.container.conftest import World
from tests.container.test_streams import run, running, url
from tests.support.container import eventually

pytestmark = pytest.mark.integration

NOWHERE = "term_aaaaaaaaaaaa"  # of the grammar, and open nowhere
FLOOD = 30


async def message(ws: ClientConnection, kind: type[tp.ServerMessage]) -> tp.ServerMessage:
    """The next message of `kind` on `ws` (output and other messages skipped)."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), 20)
        if isinstance(frame, str) and isinstance(found := tp.decode_server(frame), kind):
            return found


def test_the_audit_log_holds_what_the_agent_did_with_each_terminal(world: World) -> None:
    space_id = running(world)
    alice, bob, carol = world.alice.email, world.bob.email, world.carol.email
    opened = ""

    def drivers() -> list[list[str]]:
        listed = json.loads(world.alice.ok("spaces", "terminals", "demo", "--json"))
        return [t["drivers"] for t in listed]

    async def scenario() -> None:
        nonlocal opened
        as_alice = {"Authorization": f"Bearer {world.alice.session_token}"}
        as_bob = {"Authorization": f"Bearer {world.bob.session_token}"}
        address = url(world, ep.SPACE_TERMINAL, space_id)
        async with connect(address, additional_headers=as_alice) as started:
            hello = await message(started, tp.Hello)
            assert isinstance(hello, tp.Hello)
            opened = hello.terminal_id

            # a join to a terminal that does not exist: the agent's words reach bob, and it is no join
            async with connect(f"{address}?join={NOWHERE}", additional_headers=as_bob) as nowhere:
                closed = tp.decode_server(await asyncio.wait_for(nowhere.recv(), 20))
                assert isinstance(closed, tp.Closed) and closed.code == "not_found"

            async with connect(f"{address}?join={opened}", additional_headers=as_bob) as joined:
                seen = await message(joined, tp.Hello)
                assert isinstance(seen, tp.Hello) and seen.role == "viewer"
                # a flood of the same grant, and one the agent refuses: one change
                for _ in range(FLOOD):
                    await started.send(tp.encode(tp.Grant(email=bob.upper(), role="driver")))
                await started.send(tp.encode(tp.Grant(email=alice, role="viewer")))
                refused = await message(started, tp.Refused)
                assert isinstance(refused, tp.Refused) and refused.code == "forbidden"
                assert await message(joined, tp.RoleChanged) == tp.RoleChanged(role="driver")
                await started.send(tp.encode(tp.Grant(email=bob, role="viewer")))
                assert await message(joined, tp.RoleChanged) == tp.RoleChanged(role="viewer")
                await asyncio.to_thread(eventually, lambda: drivers() == [[alice]], "the listing shows it")

                # a grant to someone the Space is not shared with, or to no user: the broker
                # answers it and the agent never hears of it; the CLI says so and changes nothing
                await started.send(tp.encode(tp.Grant(email=carol.upper(), role="driver")))
                refused = await message(started, tp.Refused)
                assert refused == tp.Refused(message=no_reach(carol), code="forbidden")
                for nobody in (carol, "nobody@example.com"):
                    args = ("spaces", "terminal-role", "demo", opened, nobody, "driver")
                    cli = await asyncio.to_thread(world.alice.pair, *args)
                    assert cli.returncode == 1 and cli.stdout == ""
                    assert cli.stderr.startswith(f"error: {no_reach(nobody)}\n"), cli.stderr
                assert drivers() == [[alice]]
                # the CLI's grants: a control-only attach, so role rows and no join or leave of alice's
                for role in ("driver", "viewer"):
                    cli = await asyncio.to_thread(
                        world.alice.pair, "spaces", "terminal-role", "demo", opened, bob, role
                    )
                    assert cli.returncode == 0, cli.stderr
                    assert await message(joined, tp.RoleChanged) == tp.RoleChanged(role=role)

                # a grant naming a text with terminal escapes: the CLI refuses it before sending,
                args = ("spaces", "terminal-role", "demo", opened, f"{bob}\x1b]0;owned\x07", "driver")
                cli = await asyncio.to_thread(world.alice.pair, *args)
                assert cli.returncode == 1 and cli.stdout == ""
                assert cli.stderr.startswith(f"error: '{bob}\\x1b]0;owned\\x07' is not an email address.")
                # and the broker closes a stream that sends one
                await started.send(tp.encode(tp.Grant(email=f"{bob}\x1b]0;owned\x07", role="driver")))
                await asyncio.wait_for(started.wait_closed(), 20)
                assert (started.close_code, started.close_reason) == (CloseCode.INVALID, BAD_GRANT)

    run(scenario())

    def rows() -> list[tuple[str, str, str]]:
        result = world.broker.admin("audit", "--target", space_id, "--json", "-n", "500")
        assert result.returncode == 0, result.stderr
        every = [(r["actor"], r["action"], r["detail"]) for r in json.loads(result.stdout)]
        return [row for row in every if row[1].startswith("terminal.")]

    eventually(lambda: sum(action == "terminal.leave" for _, action, _ in rows()) == 2, "both left")
    terminal_rows = rows()
    shapes = [
        (actor, action, re.sub(r"stream pty_[a-z2-7]{12}", "stream S", detail))
        for actor, action, detail in terminal_rows
    ]
    assert shapes[:6] == [
        (alice, "terminal.open", f"{opened} stream S"),
        (bob, "terminal.join", f"{opened} stream S"),
        (alice, "terminal.role", f"{opened}: {bob} is now a driver"),
        (alice, "terminal.role", f"{opened}: {bob} is now a viewer"),
        (alice, "terminal.role", f"{opened}: {bob} is now a driver"),
        (alice, "terminal.role", f"{opened}: {bob} is now a viewer"),
    ]
    assert sorted(actor for actor, _, _ in shapes[6:]) == sorted([alice, bob])
    for _, action, detail in shapes[6:]:
        assert action == "terminal.leave" and re.fullmatch(rf"{opened} stream S: \d+ bytes in, \d+ out", detail)
    assert not any(NOWHERE in detail or "\x1b" in detail for _, _, detail in terminal_rows)
