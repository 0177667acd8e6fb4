"""Whether the Space's sshd is serving SSH, and why not: what the agent reports to the broker.

Two witnesses: supervisord's state for the `sshd` program (read over its XML-RPC socket, cheap
enough to ask every second), and a TCP connection to 127.0.0.1:PORT that must be greeted with an
SSH identification string (RFC 4253 section 4.2). The second catches what the first cannot: sshd
not run by supervisord, or another program holding the port. The probe leaves a line in sshd's
log, so it runs only when supervisord's state changes, while SSH is down, or when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time

from pair.api.models import SshHealth
from pair.container.supervisor import ProcessInfo, Rpc, SupervisorError

PROGRAM = "sshd"  # the supervisord program pair's configs define
PROBE_TIMEOUT = 2.0  # seconds to connect and to be greeted
REPROBE_SECONDS = 10.0  # while SSH is down, look again this often even if supervisord's state stays
REASON_LIMIT = 300  # characters; the wire's limit (pair.api.models.ShortText)
LOG_LINES = 2  # the last lines of sshd's log that explain a failure
FAILED = {"BACKOFF", "EXITED", "FATAL"}
STATE_WORDS = {
    "STOPPED": "sshd is stopped",
    "STARTING": "sshd is starting",
    "STOPPING": "sshd is stopping",
    "BACKOFF": "sshd keeps exiting (supervisord is retrying)",
    "EXITED": "sshd exited",
    "FATAL": "sshd could not start (supervisord gave up)",
    "UNKNOWN": "supervisord does not know the state of sshd",
}
# C0/C1 controls, DEL and bidi overrides: never passed on to terminals or pages.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")
_LOG_PREFIX = re.compile(r"^(?:sshd(?:\[\d+\])?: )?(?:error|fatal): ", re.IGNORECASE)


def clean(text: str, limit: int = REASON_LIMIT) -> str:
    """One line of printable text, at most `limit` characters (cut with "…")."""
    flat = " ".join(_UNSAFE.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def log_reason(tail: str) -> str:
    """What the last lines of sshd's log say (sshd -e writes its errors there), without the
    `error:`/`fatal:` prefixes; "" if the log is empty."""
    lines = [clean(_LOG_PREFIX.sub("", line)) for line in tail.splitlines()]
    lines = [line for line in lines if line]
    picked: list[str] = []
    for line in reversed(lines):  # the last distinct lines, in their order
        if line not in picked:
            picked.insert(0, line)
        if len(picked) == LOG_LINES:
            break
    return " ".join(line if line.endswith((".", "!")) else line + "." for line in picked)


def os_error(exc: OSError) -> str:
    """The system's words for an error ("Connection refused"); asyncio's own strerror adds the address."""
    return os.strerror(exc.errno) if exc.errno else type(exc).__name__


async def probe(port: int, timeout: float = PROBE_TIMEOUT) -> str:
    """ "" if 127.0.0.1:`port` greets with an SSH identification string, else why not (a phrase).

    RFC 4253 4.2: the server sends `SSH-2.0-…` (or `SSH-1.99-…`, a server that also speaks
    protocol 1), possibly after other lines; nothing is sent back before closing."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    except TimeoutError:
        return f"port {port} does not accept connections (no answer in {timeout:g} s)"
    except OSError as exc:
        return f"nothing listens on port {port} ({os_error(exc)})"
    lines: list[str] = []
    try:
        await asyncio.wait_for(_read_greeting(reader, lines), timeout)
    except TimeoutError:
        pass  # judged by what it sent meanwhile
    except OSError as exc:
        return f"port {port} closed the connection at once ({os_error(exc)})"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if any(line.startswith(("SSH-2.0-", "SSH-1.99-")) for line in lines):
        return ""
    text = next((line for line in lines if line.strip()), "")
    if not text:
        return f"another program holds port {port}: it sends no SSH greeting"
    return f"another program holds port {port}: it answers {clean(text, 60)!r}, not SSH"


async def _read_greeting(reader: asyncio.StreamReader, lines: list[str]) -> None:
    """Collect the server's first lines into `lines` until its version line (`SSH-…`)."""
    while len(lines) < 5:  # a few lines of text may precede the version line; no more are waited for
        line = await reader.readline()
        if not line:
            return
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if lines[-1].startswith("SSH-"):
            return


class SshWatch:
    """The current SshHealth of the sshd on `port`, recomputed only when there is news.

    `rpc` is the supervisord client (None when sshd does not run under a supervisord we can
    reach: then the probe alone decides)."""

    def __init__(self, port: int, rpc: Rpc | None) -> None:
        self.port = port
        self.rpc = rpc
        self.health: SshHealth | None = None
        self._state: str | None = None
        self._checked_at = 0.0
        self._lock = asyncio.Lock()  # one look at a time (the watch loop, a reply, a failed SSH stream)
        self._starting = False  # the agent is starting sshd: its states in passing are not news
        self._generation = 0  # bumped by starting() and started(): a look begun before is out of date

    async def check(self, *, force: bool = False) -> SshHealth:
        """The health now. Cheap unless supervisord's state changed, SSH is down and the last
        probe is old, or `force` (an SSH stream could not reach sshd)."""
        async with self._lock:
            generation = self._generation
            if self._starting:
                assert self.health is not None
                return self.health
            fresh = await self._check(force)
            if generation != self._generation:  # sshd was (re)started meanwhile: this look predates it
                assert self.health is not None
                return self.health
            self.health = fresh
            return fresh

    async def _check(self, force: bool) -> SshHealth:
        info: ProcessInfo | None = None
        if self.rpc is not None:
            with contextlib.suppress(SupervisorError):  # supervisord is down, or runs no sshd: probe alone
                info = await asyncio.to_thread(self.rpc.process, PROGRAM)
        state = info.state if info is not None else ""
        health = self.health
        recent = time.monotonic() - self._checked_at < REPROBE_SECONDS
        if health is not None and (health.serving or recent) and state == self._state and not force:
            return health
        self._state = state
        self._checked_at = time.monotonic()
        fresh = await self._assess(info)
        if fresh.settling and health is not None and health.supervisor_state == "BACKOFF":
            return health  # supervisord retrying a failing sshd: still failing until it runs
        return fresh

    def starting(self) -> SshHealth:
        """Take sshd as starting until started(): the agent is (re)starting it, so neither an old
        failure nor the states it passes through (STOPPED, during a restart) are news."""
        self.health = SshHealth(serving=False, reason=STATE_WORDS["STARTING"] + ".", supervisor_state="STARTING")
        self._starting = True
        self._generation += 1
        return self.health

    def started(self) -> None:
        """The agent's start of sshd is over (done or failed): the next check looks again."""
        self._starting = False
        self._state = None  # whatever supervisord says next is news
        self._generation += 1

    async def _assess(self, info: ProcessInfo | None) -> SshHealth:
        if info is not None and info.state != "RUNNING":
            words = STATE_WORDS.get(info.state, f"sshd is {info.state.lower()} in supervisord")
            detail = ""
            if info.state in FAILED:
                # supervisord's spawn error when it could not even run sshd ("can't find command"),
                # else what sshd said last, else who holds the port, else supervisord's words.
                exit_report = info.spawn_error.startswith(("Exited too quickly", "Bad exit code"))
                spawn = "" if exit_report else info.spawn_error
                detail = spawn or log_reason(await asyncio.to_thread(self._tail))
                detail = detail or await probe(self.port) or info.description
            reason = f"{words}: {detail}" if detail else words + "."
            return SshHealth(serving=False, reason=clean(reason), supervisor_state=info.state)
        why = await probe(self.port)
        state = info.state if info is not None else ""
        if why:
            reason = f"sshd runs, but {why}." if info is not None else f"SSH is not answering: {why}."
            return SshHealth(serving=False, reason=clean(reason), supervisor_state=state)
        return SshHealth(serving=True, supervisor_state=state)

    def _tail(self) -> str:
        assert self.rpc is not None
        try:
            return self.rpc.tail(PROGRAM)
        except SupervisorError:
            return ""
