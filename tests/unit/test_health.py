"""What the agent says about sshd (pair.container.health) and what people are told from it
(pair.api.readiness): the probe against real sockets, the log reading, the sanitizer agreeing with
the broker's grammar, and the one decision between "go", "wait" and "refuse"."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pair.api import readiness
from pair.api.models import Role, Space, SpaceState, SshHealth
from pair.container import health
from pair.container.supervisor import ProcessInfo, SupervisorError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        await srv.wait_closed()


def says(greeting: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        await reader.read()  # until the probe hangs up
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()
    writer.close()


def probe_with(handler: Handler, timeout: float = health.PROBE_TIMEOUT) -> str:
    async def go() -> str:
        async with server(handler) as port:
            return await health.probe(port, timeout)

    return asyncio.run(go())


def test_an_ssh_greeting_is_serving() -> None:
    assert probe_with(says(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")) == ""
    assert probe_with(says(b"SSH-1.99-Old\r\n")) == ""
    assert probe_with(says(b"welcome, RFC 4253 allows lines first\r\nSSH-2.0-x\r\n")) == ""


def test_another_program_on_the_port_is_not_serving() -> None:
    http = probe_with(says(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    assert "another program holds port" in http
    assert "'HTTP/1.1 400 Bad Request', not SSH" in http
    quiet = probe_with(silent, timeout=0.3)
    assert "another program holds port" in quiet
    assert "sends no SSH greeting" in quiet


def test_nothing_listening_is_not_serving() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        why = asyncio.run(health.probe(port))
    assert why == f"nothing listens on port {port} (Connection refused)"


def test_the_reason_is_the_last_lines_sshd_wrote() -> None:
    log = (
        "Server listening on 0.0.0.0 port 2222.\n"
        "Accepted publickey for root from 127.0.0.1 port 40000 ssh2: ED25519 SHA256:abc\n"
        "Received signal 15; terminating.\n"
        "error: Bind to port 2222 on 0.0.0.0 failed: Address already in use.\n"
        "fatal: Cannot bind any address.\n"
        "error: Bind to port 2222 on 0.0.0.0 failed: Address already in use.\n"
        "fatal: Cannot bind any address.\n"
    )
    assert (
        health.log_reason(log)
        == "Bind to port 2222 on 0.0.0.0 failed: Address already in use. Cannot bind any address."
    )
    config = (
        "/etc/ssh/pair_sshd_config: line 3: Bad configuration option: Foo\n"
        "/etc/ssh/pair_sshd_config: terminating, 1 bad configuration options\n"
    )
    assert health.log_reason(config).startswith("/etc/ssh/pair_sshd_config: line 3: Bad configuration option: Foo.")
    assert health.log_reason("") == ""
    assert health.log_reason("\x1b]0;TITLE\x07fatal: \x1b[31mred\n") == "]0;TITLE fatal: [31mred."  # no ESC, no BEL


@given(st.text(max_size=2000))
def test_whatever_sshd_logs_the_agent_reports_text_the_broker_accepts(text: str) -> None:
    for reason in (
        health.clean(text),
        health.log_reason(text),
        health.clean("sshd exited: " + health.log_reason(text)),
    ):
        beat = msgspec.json.encode({"serving": False, "reason": reason, "supervisor_state": "FATAL"})
        assert msgspec.json.decode(beat, type=SshHealth).reason == reason  # never refused on entry


def forbidden(c: str) -> bool:
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"


@given(st.text(max_size=400))
def test_the_broker_takes_one_line_of_printable_text_and_nothing_else(reason: str) -> None:
    beat = msgspec.json.encode({"serving": False, "reason": reason})
    try:
        msgspec.json.decode(beat, type=SshHealth)
        accepted = True
    except msgspec.ValidationError:
        accepted = False
    assert accepted == (len(reason) <= health.REASON_LIMIT and not any(forbidden(c) for c in reason))


# -- what people are told ----------------------------------------------------------------------

NOW = datetime(2027, 1, 15, tzinfo=UTC)
FATAL = SshHealth(
    serving=False,
    reason="sshd could not start (supervisord gave up): Cannot bind any address.",
    supervisor_state="FATAL",
)
STARTING = SshHealth(serving=False, reason="sshd is starting.", supervisor_state="STARTING")
SERVING = SshHealth(serving=True, supervisor_state="RUNNING")


def space(state: SpaceState, ssh: SshHealth | None, role: Role = "shared") -> Space:
    return Space(
        id="sp_1",
        name="box",
        owner="alice@example.com",
        role=role,
        state=state,
        created_at=NOW,
        updated_at=NOW,
        ssh=ssh,
    )


@pytest.mark.parametrize(
    ("state", "ssh", "verdict"),
    [
        ("running", SERVING, None),
        ("running", None, None),  # an agent older than the health report
        ("starting", None, None),  # the relay waits a few seconds for it
        ("starting", STARTING, None),
        ("starting", FATAL, "ssh_down"),
        ("stopped", None, "not_running"),
        ("stopping", FATAL, "not_running"),
        ("created", None, "not_running"),
    ],
)
def test_go_wait_or_refuse(state: SpaceState, ssh: SshHealth | None, verdict: str | None) -> None:
    refused = readiness.refusal(space(state, ssh))
    assert (refused.code if refused else None) == verdict


def test_a_failing_sshd_is_named_with_the_agents_reason_and_a_hint_for_each_role() -> None:
    teammate = readiness.refusal(space("starting", FATAL))
    assert teammate is not None
    assert teammate.message == f'SSH is not being served in "box": {FATAL.reason}'
    assert teammate.hint.startswith("Ask its owner (alice@example.com) to fix it")
    owner = readiness.refusal(space("starting", FATAL, role="owner"))
    assert owner is not None
    assert "`pair spaces up --space box` starts sshd again" in owner.hint
    assert readiness.ssh_failure(space("starting", FATAL)) == FATAL.reason
    assert readiness.ssh_failure(space("running", SERVING)) == ""


# -- the watch: supervisord's word first, the probe only when there is news ------------------


class FakeSupervisor:
    """Stands in for supervisord's XML-RPC interface (pair.container.supervisor.Rpc)."""

    def __init__(self, state: str, log: str = "") -> None:
        self.state = state
        self.log = log
        self.calls: list[str] = []

    def process(self, name: str) -> ProcessInfo:
        self.calls.append("process")
        if self.state == "DOWN":
            raise SupervisorError("FileNotFoundError: supervisord's socket is gone")
        return ProcessInfo(self.state, "Exited too quickly (process log may have details)", "")

    def tail(self, name: str, length: int = 4096) -> str:
        self.calls.append("tail")
        return self.log


def watch(port: int, supervisor: FakeSupervisor | None) -> health.SshWatch:
    return health.SshWatch(port, supervisor)  # type: ignore[arg-type]


def test_a_fatal_sshd_is_reported_with_its_log_and_without_probing() -> None:
    supervisor = FakeSupervisor("FATAL", "error: Bind to port 2222 on 0.0.0.0 failed: Address already in use.\n")

    async def go() -> SshHealth:
        async with server(silent) as port:  # something holds the port; the log already says so
            return await watch(port, supervisor).check()

    got = asyncio.run(go())
    assert got == SshHealth(
        serving=False,
        reason="sshd could not start (supervisord gave up): Bind to port 2222 on 0.0.0.0 failed: "
        "Address already in use.",
        supervisor_state="FATAL",
    )


def test_sshd_running_while_another_program_answers_the_port_is_not_serving() -> None:
    async def go() -> SshHealth:
        async with server(says(b"+OK POP3 ready\r\n")) as port:
            return await watch(port, FakeSupervisor("RUNNING")).check()

    got = asyncio.run(go())
    assert not got.serving
    assert got.reason.startswith("sshd runs, but another program holds port")
    assert "'+OK POP3 ready', not SSH" in got.reason


def test_the_probe_runs_again_only_when_supervisords_state_changes_or_when_forced() -> None:
    probes: list[int] = []

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        probes.append(1)
        await says(b"SSH-2.0-OpenSSH_9.2\r\n")(reader, writer)

    async def go() -> list[bool]:
        supervisor = FakeSupervisor("RUNNING")
        async with server(counting) as port:
            w = watch(port, supervisor)
            seen = [(await w.check()).serving, (await w.check()).serving, (await w.check()).serving]
            assert len(probes) == 1
            supervisor.state, supervisor.log = "EXITED", "fatal: Cannot bind any address.\n"
            seen.append((await w.check()).serving)  # the log says why: no probe
            supervisor.state = "RUNNING"
            seen.append((await w.check()).serving)
            seen.append((await w.check(force=True)).serving)
            assert len(probes) == 3
            return seen

    assert asyncio.run(go()) == [True, True, True, False, True, True]


def test_without_supervisord_the_probe_alone_decides() -> None:
    async def go() -> tuple[SshHealth, SshHealth]:
        async with server(says(b"SSH-2.0-dropbear\r\n")) as port:
            served = await watch(port, FakeSupervisor("DOWN")).check()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            down = await watch(s.getsockname()[1], None).check()
        return served, down

    served, down = asyncio.run(go())
    assert served == SshHealth(serving=True)
    assert not down.serving
    assert down.reason.startswith("SSH is not answering: nothing listens on port")


def test_supervisord_retrying_a_failing_sshd_is_still_failing() -> None:
    supervisor = FakeSupervisor("BACKOFF", "Bind to port 2222 on :: failed: Address already in use.\n")

    async def go() -> list[str]:
        async with server(silent) as port:
            w = watch(port, supervisor)
            states = [(await w.check()).supervisor_state]
            supervisor.state = "STARTING"  # the next try
            states.append((await w.check()).supervisor_state)
            supervisor.state = "FATAL"
            states.append((await w.check()).supervisor_state)
            w.starting()  # the owner asked again (`pair spaces up`): the agent restarts it
            supervisor.state = "STOPPED"  # in passing, during the restart: not news
            states.append((await w.check(force=True)).supervisor_state)
            supervisor.state = "STARTING"
            w.started()
            states.append((await w.check()).supervisor_state)
            supervisor.state = "BACKOFF"
            states.append((await w.check()).supervisor_state)
            return states

    assert asyncio.run(go()) == ["BACKOFF", "BACKOFF", "FATAL", "STARTING", "STARTING", "BACKOFF"]
