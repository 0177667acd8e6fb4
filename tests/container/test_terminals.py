"""The agent's terminal engine with real PTYs and real bash: a login shell as a non-root user,
output to every attachment, viewers' input dropped, roles, resize, scrollback across reattaching,
the idle hang-up, exit statuses, limits, and the stream protocol over a real WebSocket.

As root (CI), shells run as `nobody` (given /bin/bash, since its passwd shell is nologin);
otherwise as the user running the tests, and the identity test skips.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from pair.api import terminal as tp
from pair.container.terminals import Attachment, Limits, TerminalError, TerminalManager, login_for, pump
from tests.support.tools import need_tool

T = TypeVar("T")
ROOT = os.geteuid() == 0
USER = "nobody" if ROOT else getpass.getuser()
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
TIMEOUT = 20.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture
def workspace() -> Iterator[Path]:
    """A folder the shell's user may write to (pytest's tmp dirs are private to root)."""
    need_tool("bash")
    folder = Path(tempfile.mkdtemp(prefix="pair-terminal-", dir="/tmp"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def manager(workspace: Path, log: list[str] | None = None, **limits: Any) -> TerminalManager:
    env = {"CODESPACES": "true", "CODESPACE_VSCODE_FOLDER": str(workspace)}
    return TerminalManager(
        USER,
        shell=shutil.which("bash"),
        env=env,
        limits=Limits(**limits),
        log=(log.append if log is not None else None),
    )


class Screen:
    """Everything an attachment was sent: output bytes and messages, with waits on them."""

    def __init__(self, attachment: Attachment) -> None:
        self.attachment = attachment
        self.output = bytearray()
        self.messages: list[tp.ServerMessage] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for item in self.attachment:
            async with self._changed:
                if isinstance(item, bytes):
                    self.output += item
                else:
                    self.messages.append(item)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def wait_for(self, pattern: str, start: int = 0) -> re.Match[str]:
        """The first match of `pattern` (DOTALL) in the output after byte `start`."""
        regex = re.compile(pattern, re.DOTALL)
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: regex.search(self.text, start) or self.task.done()), TIMEOUT
            )
        match = regex.search(self.text, start)
        assert match, f"{pattern!r} never appeared in {self.text[start:]!r}"
        return match

    async def wait_message(self, kind: type[T]) -> T:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: any(isinstance(m, kind) for m in self.messages) or self.task.done()),
                TIMEOUT,
            )
        found = [m for m in self.messages if isinstance(m, kind)]
        assert found, f"no {kind.__name__} in {self.messages}"
        return found[-1]

    async def run(self, command: str) -> str:
        """Type `command` (as this attachment) and return what it printed. It is wrapped in two
        markers that the echo of the typed line cannot match (it shows them with quotes)."""
        tag = os.urandom(4).hex()
        start = len(self.output)
        await self.attachment.write(f"echo begin-''{tag}; {command}; echo end-''{tag}\n".encode())
        match = await self.wait_for(rf"begin-{tag}\r\n(.*?)end-{tag}\r\n", start)
        return match.group(1).replace("\r\n", "\n")


async def drive(manager_: TerminalManager, who: str = ALICE, **size: int) -> tuple[Screen, int]:
    attachment = await manager_.connect(tp.OpenTerminal(email=who, **size))
    screen = Screen(attachment)
    await screen.wait_message(tp.Hello)
    return screen, attachment.terminal.pid


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_a_shell_as_the_login_user_with_a_logins_environment(workspace: Path) -> None:
    if not ROOT:
        pytest.skip("switching to another user needs root")

    async def scenario() -> None:
        terminals = manager(workspace)
        screen, pid = await drive(terminals)
        assert "42" in await screen.run("echo $((6*7))")
        entry = pwd.getpwnam("nobody")
        status = proc_status(pid)
        assert status["Uid"].split() == [str(entry.pw_uid)] * 4
        assert status["Gid"].split() == [str(entry.pw_gid)] * 4
        assert sorted(map(int, status["Groups"].split())) == sorted(set(os.getgrouplist("nobody", entry.pw_gid)))
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"-bash"
        environ = dict(
            item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item
        )
        assert environ["USER"] == environ["LOGNAME"] == "nobody"
        assert environ["HOME"] == entry.pw_dir
        assert environ["TERM"] == "xterm-256color"
        assert environ["LANG"] == "C.UTF-8"
        assert environ["SHELL"] == shutil.which("bash")
        assert "/usr/local/sbin" not in environ["PATH"].split(":")  # a user's PATH, not root's
        assert os.readlink(f"/proc/{pid}/cwd") == str(workspace)
        # a login shell (argv[0] "-bash"), interactive, with the PTY as its controlling terminal
        assert (
            await screen.run("shopt -q login_shell && echo login; [[ $- == *i* ]] && echo interactive")
        ).split() == [
            "login",
            "interactive",
        ]
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        session, tty_nr = int(stat[3]), int(stat[4])
        assert session == pid and tty_nr != 0  # a session leader with the PTY as its terminal
        assert (await screen.run("tty")).strip().startswith("/dev/pts/")
        await terminals.aclose()

    run(scenario())


def test_drivers_type_viewers_only_watch_until_the_starter_hands_over(workspace: Path) -> None:
    log: list[str] = []

    async def scenario() -> None:
        terminals = manager(workspace, log)
        alice, _pid = await drive(terminals)
        bob = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=alice.attachment.terminal.id, email=BOB)))
        hello = await bob.wait_message(tp.Hello)
        assert (hello.role, hello.started_by) == ("viewer", ALICE)
        attached = await alice.wait_message(tp.Attached)
        assert [(p.email, p.role) for p in attached.people] == [(ALICE, "driver"), (BOB, "viewer")]

        # alice's output reaches bob live
        start = len(bob.output)
        assert "42" in await alice.run("echo $((6*7))")
        await bob.wait_for(r"\r\n42\r\n", start)

        # bob's keystrokes are dropped: the file is never made (alice's next command proves the
        # shell took everything it was given before it)
        await bob.attachment.write(f"touch {workspace}/bob-was-here\n".encode())
        await alice.run("true")
        assert not (workspace / "bob-was-here").exists()

        # only the starter hands over the keyboard
        await bob.attachment.control(tp.encode(tp.Grant(email=BOB, role="driver")))
        refused = await bob.wait_message(tp.Refused)
        assert refused.code == "forbidden"
        await alice.attachment.control(tp.encode(tp.Grant(email=BOB, role="driver")))
        assert (await bob.wait_message(tp.RoleChanged)).role == "driver"
        await bob.run(f"touch {workspace}/bob-was-here")
        assert (workspace / "bob-was-here").exists()

        # and takes it back
        bob.messages.clear()
        await alice.attachment.control(tp.encode(tp.Grant(email=BOB, role="viewer")))
        assert (await bob.wait_message(tp.RoleChanged)).role == "viewer"
        await bob.attachment.write(f"touch {workspace}/bob-again\n".encode())
        await alice.run("true")
        assert not (workspace / "bob-again").exists()

        # the starter stays a driver
        await alice.attachment.control(tp.encode(tp.Grant(email=ALICE, role="viewer")))
        assert (await alice.wait_message(tp.Refused)).code == "forbidden"
        await terminals.aclose()

    run(scenario())
    assert any("made bob@example.com a driver" in line for line in log)
    assert not any("touch" in line for line in log)  # nothing typed is logged


def test_a_grant_is_judged_where_it_arrives_and_only_a_change_is_news(workspace: Path) -> None:
    """Reproduction: a grant's email was not checked by the agent (a text with ESC or a newline
    became a "driver"), and a grant that changed nothing was logged and listed as a change. Only
    the one real change is reported to the broker, for its audit."""
    log: list[str] = []
    changes: list[None] = []

    async def scenario() -> None:
        terminals = manager(workspace, log)
        terminals._changed = lambda: changes.append(None)
        alice, _ = await drive(terminals)
        terminal = alice.attachment.terminal
        for bad in ("bob", "bob@example.com\n", "x\x1b]0;owned\x07@example.com", "\u202ebob@example.com"):
            alice.messages.clear()
            await alice.attachment.control(tp.encode(tp.Grant(email=bad, role="driver")))
            refused = await alice.wait_message(tp.Refused)
            assert refused.code == "bad_message" and "is not an email address" in refused.message
        assert list(terminal.drivers) == [ALICE]
        before = len(changes)
        for _ in range(5):  # the same grant, again and again: one change
            await alice.attachment.control(tp.encode(tp.Grant(email="Bob@Example.COM", role="driver")))
        assert list(terminal.drivers) == [ALICE, BOB]  # kept as the broker keeps emails
        await alice.attachment.control(tp.encode(tp.Grant(email=CAROL, role="viewer")))  # already one
        assert len(changes) == before + 1
        assert terminals.take_role_changes() == [
            tp.RoleChange(terminal_id=terminal.id, email=BOB, role="driver", by=ALICE)
        ]  # what the broker audits
        await terminals.aclose()

    run(scenario())
    assert [line for line in log if " made " in line] == [f"terminal {terminal_id(log)}: {ALICE} made {BOB} a driver"]


def test_a_control_only_attach_grants_and_sees_nothing(workspace: Path) -> None:
    """`pair spaces terminal-role`'s attach (repro: it joined as a viewer, so the broker audited
    the starter joining and leaving): its `hello` says `control`, then only answers to what it
    sends; no scrollback, no output, not one of the people attached, keystrokes dropped."""

    async def scenario() -> None:
        terminals = manager(workspace)
        alice, _ = await drive(terminals)
        terminal = alice.attachment.terminal
        await alice.run("echo secret-$((6*7))")
        control = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=terminal.id, email=ALICE, control=True)))
        hello = await control.wait_message(tp.Hello)
        assert hello.control and hello.terminal_id == terminal.id and hello.started_by == ALICE
        assert [p.email for p in terminal.people()] == [ALICE]
        await control.attachment.write(b"echo typed-by-control\n")
        await control.attachment.control(tp.encode(tp.Grant(email=BOB, role="driver")))
        await control.attachment.control(tp.encode(tp.Grant(email=ALICE, role="viewer")))
        refused = await control.wait_message(tp.Refused)
        assert refused.code == "forbidden"
        assert list(terminal.drivers) == [ALICE, BOB]
        await alice.run("echo more")  # output after the control attach: none of it reaches it
        assert "typed-by-control" not in alice.text
        assert control.output == b"" and [type(m) for m in control.messages] == [tp.Hello, tp.Refused]
        control.attachment.detach()
        assert [p.email for p in terminal.people()] == [ALICE]
        await terminals.aclose()
        control.task.cancel()

    run(scenario())


def terminal_id(log: list[str]) -> str:
    return next(line.split()[1].rstrip(":") for line in log if line.startswith("terminal "))


def test_a_grant_outlives_a_reload_and_read_only_joins_stay_viewers(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(workspace)
        alice, _ = await drive(terminals)
        terminal = alice.attachment.terminal
        terminals.set_role(terminal.id, BOB, "driver", by=ALICE)
        with pytest.raises(TerminalError) as refused:
            terminals.set_role(terminal.id, ALICE, "driver", by=BOB)
        assert refused.value.code == "forbidden"
        bob = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=terminal.id, email=BOB)))
        assert (await bob.wait_message(tp.Hello)).role == "driver"
        watcher = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=terminal.id, email=BOB, read_only=True)))
        assert (await watcher.wait_message(tp.Hello)).role == "viewer"
        assert [info.drivers for info in terminals.list()] == [[ALICE, BOB]]
        assert sorted((p.email, p.role) for p in terminals.list()[0].people) == [
            (ALICE, "driver"),
            (BOB, "driver"),
            (BOB, "viewer"),
        ]
        await terminals.aclose()

    run(scenario())


def test_the_latest_drivers_size_wins_and_viewers_are_told(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(workspace)
        alice, _ = await drive(terminals, cols=100, rows=30)
        assert (await alice.run("stty size")).split() == ["30", "100"]
        bob = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=alice.attachment.terminal.id, email=BOB)))
        await bob.wait_message(tp.Hello)
        await alice.attachment.control(tp.encode(tp.Resize(cols=132, rows=43)))
        assert (await bob.wait_message(tp.SizeChanged)) == tp.SizeChanged(cols=132, rows=43)
        assert (await alice.run("stty size")).split() == ["43", "132"]
        await bob.attachment.control(tp.encode(tp.Resize(cols=40, rows=10)))  # a viewer's: ignored
        assert (await alice.run("stty size")).split() == ["43", "132"]
        # out of range: refused by the protocol, the size stays
        await alice.attachment.control('{"type": "resize", "cols": 0, "rows": 5000}')
        assert (await alice.wait_message(tp.Refused)).code == "bad_message"
        assert (await alice.run("stty size")).split() == ["43", "132"]
        await terminals.aclose()

    run(scenario())


def test_reattaching_replays_the_scrollback_to_the_same_shell(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(workspace)
        alice, pid = await drive(terminals)
        terminal = alice.attachment.terminal
        before = await alice.run("echo pid:$$; echo $((6*7))")
        assert f"pid:{pid}" in before
        alice.attachment.detach()
        await alice.task
        assert terminals.list()[0].people == []  # nobody attached, the shell goes on
        again = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=terminal.id, email=ALICE)))
        assert (await again.wait_message(tp.Hello)).role == "driver"
        await again.wait_for(rf"pid:{pid}\r\n42\r\n")  # from the scrollback, before typing anything
        assert f"pid:{pid}" in await again.run("echo pid:$$")
        await terminals.aclose()

    run(scenario())


def test_an_idle_terminal_is_hung_up_and_one_ignoring_sighup_is_killed(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(workspace, idle_seconds=0.5, hangup_grace=0.5)
        alice, _ = await drive(terminals)
        first = alice.attachment.terminal
        await alice.run("echo ready")
        alice.attachment.detach()
        await asyncio.wait_for(first.ended.wait(), TIMEOUT)
        assert first.exit_status == 129  # 128 + SIGHUP
        stubborn, _ = await drive(terminals)
        second = stubborn.attachment.terminal
        await stubborn.run("trap '' HUP")
        stubborn.attachment.detach()
        await asyncio.wait_for(second.ended.wait(), TIMEOUT)
        assert second.exit_status == 137  # 128 + SIGKILL, after the grace
        assert terminals.list() == []

    run(scenario())


def test_every_attachment_gets_the_exit_status(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(workspace)
        alice, _ = await drive(terminals)
        bob = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=alice.attachment.terminal.id, email=BOB)))
        await bob.wait_message(tp.Hello)
        await alice.attachment.write(b"echo bye; exit 3\n")
        for screen in (alice, bob):
            await asyncio.wait_for(screen.task, TIMEOUT)  # the stream ends after the exit message
            assert screen.messages[-1] == tp.Exited(status=3, signal="")
            assert "bye" in screen.text
        assert terminals.list() == []
        with pytest.raises(TerminalError) as gone:
            await terminals.connect(tp.JoinTerminal(terminal_id=alice.attachment.terminal.id, email=ALICE))
        assert gone.value.code == "not_found"

    run(scenario())


def test_limits_terminals_messages_and_a_slow_reader(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(
            workspace, max_terminals=1, max_input_bytes=1024, output_high_water=64 * 1024, stall_seconds=0.5
        )
        alice, _ = await drive(terminals)
        with pytest.raises(TerminalError) as full:
            await terminals.connect(tp.OpenTerminal(email=BOB))
        assert full.value.code == "limit"
        terminal = alice.attachment.terminal

        # bob's attachment is never read: once it is far behind, it is closed, and alice's output
        # goes on (the PTY is read again)
        stalled = await terminals.connect(tp.JoinTerminal(terminal_id=terminal.id, email=BOB))
        out = await alice.run("head -c 1000000 /dev/zero | tr '\\0' x; echo; echo finished")
        assert out.count("x") == 1_000_000 and "finished" in out
        items = [item async for item in stalled]
        assert items[-1] == tp.Closed(
            reason="Your connection fell behind the terminal's output; reconnect to catch up.", code="too_slow"
        )
        assert sum(len(item) for item in items if isinstance(item, bytes)) < 1_000_000

        # a frame above the input limit closes that attachment; the terminal goes on
        greedy = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=terminal.id, email=ALICE)))
        await greedy.wait_message(tp.Hello)
        await greedy.attachment.write(b"x" * 1025)
        await asyncio.wait_for(greedy.task, TIMEOUT)
        assert isinstance(greedy.messages[-1], tp.Closed) and greedy.messages[-1].code == "too_large"
        assert "42" in await alice.run("echo $((6*7))")
        await terminals.aclose()

    run(scenario())


@pytest.mark.parametrize("kicked", [False, True], ids=["unshared", "kicked"])
def test_revoking_a_person_closes_their_attachments_and_ends_what_they_started(workspace: Path, kicked: bool) -> None:
    """The others in a terminal the person started are told why it ended: their access ended,
    or (a kick; repro: they were told the access ended) the owner disconnected them."""

    async def scenario() -> None:
        terminals = manager(workspace)
        alice, _ = await drive(terminals)
        mine = alice.attachment.terminal
        bob_in_mine = Screen(await terminals.connect(tp.JoinTerminal(terminal_id=mine.id, email=BOB)))
        bobs, _ = await drive(terminals, who=BOB)
        alice_in_bobs = Screen(
            await terminals.connect(tp.JoinTerminal(terminal_id=bobs.attachment.terminal.id, email=ALICE))
        )
        for screen in (bob_in_mine, alice_in_bobs):
            await screen.wait_message(tp.Hello)
        terminals.set_role(mine.id, BOB, "driver", by=ALICE)
        terminals.revoke(BOB, "alice@example.com stopped sharing the Space with you.", kicked=kicked)
        for screen in (bob_in_mine, bobs):
            await asyncio.wait_for(screen.task, TIMEOUT)
            assert screen.messages[-1] == tp.Closed(
                reason="alice@example.com stopped sharing the Space with you.", code="revoked"
            )
        await asyncio.wait_for(alice_in_bobs.task, TIMEOUT)
        closed = alice_in_bobs.messages[-1]
        ended = (
            f"The Space's owner disconnected {BOB}, so the terminal they started ended."
            if kicked
            else f"{BOB}'s access to this Space ended, so the terminal they started ended."
        )
        assert closed == tp.Closed(reason=ended, code="ended")
        await asyncio.wait_for(bobs.attachment.terminal.ended.wait(), TIMEOUT)
        assert [info.id for info in terminals.list()] == [mine.id]
        assert mine.drivers == {ALICE: None}  # bob's grant went with his access
        assert "42" in await alice.run("echo $((6*7))")
        await terminals.aclose()

    run(scenario())


@asynccontextmanager
async def terminal_server(terminals: TerminalManager) -> AsyncIterator[str]:
    """A WebSocket server that plays the broker's and agent's part: the first text frame names
    the target, then `pump` serves the stream (as the agent will, behind the broker's splice)."""

    async def handler(ws: ServerConnection) -> None:
        target = tp.decode_target(await ws.recv())
        try:
            attachment = await terminals.connect(target)
        except TerminalError as exc:
            await ws.send(tp.encode(tp.Closed(reason=exc.message, code=exc.code)))
            return
        await pump(attachment, ws)

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=tp.MAX_INPUT_BYTES) as server:
        host, port = next(iter(server.sockets)).getsockname()[:2]
        yield f"ws://{host}:{port}/"


def test_the_stream_protocol_over_a_real_websocket(workspace: Path) -> None:
    async def scenario() -> None:
        terminals = manager(workspace)
        async with terminal_server(terminals) as url, connect(url, compression=None) as ws:
            await ws.send(tp.encode(tp.OpenTerminal(email=ALICE, cols=90, rows=20)))
            hello = tp.decode_server(await ws.recv())
            assert isinstance(hello, tp.Hello) and (hello.cols, hello.rows, hello.role) == (90, 20, "driver")
            await ws.send(b"stty size; echo $((6*7)); exit 5\n")
            output, messages = bytearray(), []
            async for frame in ws:  # the agent's side closes after `exit`
                if isinstance(frame, bytes):
                    output += frame
                else:
                    messages.append(tp.decode_server(frame))
            assert b"20 90\r\n42\r\n" in output
            assert isinstance(messages[0], tp.Attached)
            assert messages[-1] == tp.Exited(status=5)

            async with connect(url) as ws2:
                await ws2.send(tp.encode(tp.JoinTerminal(terminal_id=hello.terminal_id, email=ALICE)))
                closed = tp.decode_server(await ws2.recv())
                assert isinstance(closed, tp.Closed) and closed.code == "not_found"

    run(scenario())


def test_login_for_refuses_what_cannot_log_in() -> None:
    with pytest.raises(TerminalError, match="does not exist"):
        login_for("no-such-user-here", {})
    if ROOT:
        with pytest.raises(TerminalError, match="no usable login shell"):
            login_for("nobody", {})  # /usr/sbin/nologin
    with pytest.raises(msgspec.ValidationError):
        tp.decode_target('{"type": "join", "terminal_id": "term_../../etc", "email": "a@b.c"}')
