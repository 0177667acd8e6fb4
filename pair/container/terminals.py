"""The agent's terminals: login shells on PTYs that several people attach to (Linux, asyncio).

`TerminalManager.connect(target)` turns a broker's `OpenTerminal`/`JoinTerminal`
(`pair.api.terminal`) into an `Attachment`; `pump(attachment, socket)` then copies between it
and the person's stream until either ends. The protocol on that stream is documented in
`pair.api.terminal`; the design in docs/architecture.md ("Terminals: the agent side").

- **The shell** is the Space's login user's login shell, started the way `login`/sshd do: its
  argv[0] is `-bash` (a login shell), the user's groups, gid and uid are set before exec
  (never root when the login user is not), and the environment is a login's (HOME, USER,
  LOGNAME, SHELL, PATH from the passwd entry, TERM=xterm-256color, a UTF-8 LANG). It starts in
  the workspace folder when the container names one (`workspace_folder`), else in the home.
- **How it is spawned**: `os.openpty()` and `subprocess.Popen` (reaped through a pidfd on the
  event loop), the standard library rather than `ptyprocess`: Popen's fork/exec runs in C and
  already does setsid, setgroups/setgid/setuid, the working directory, the environment, an
  argv[0] of our choosing and exec-error reporting, so the only Python that runs in the child
  is one ioctl (TIOCSCTTY, making the PTY its controlling terminal, so ^C and job control work
  and a hang-up reaches the shell). ptyprocess forks in Python (`pty.fork`, which warns and may
  deadlock in a threaded process on Python 3.12+), can't set argv[0], and its waits block.
- **Output** is read on the event loop (`add_reader` on the non-blocking master) into a bounded
  scrollback (`Scrollback`, replayed to every new attachment, so a reload shows recent output)
  and into each attachment's queue. Back-pressure: while any attachment holds more than
  `Limits.output_high_water` unsent bytes the PTY is not read (the shell blocks, as in a slow
  real terminal); an attachment stuck above it for `Limits.stall_seconds` is closed
  (`too_slow`: reconnecting catches up from the scrollback), so one stalled viewer cannot
  freeze the shell for the others.
- **Input** is written without blocking; a writer waits while more than
  `Limits.input_high_water` bytes are queued for the shell, which pushes back on the person's
  socket. Input from a viewer is dropped here, not merely hidden by a page. Nothing typed is
  logged: the log says who opened, joined, left, changed roles, and how a shell ended.
- **Roles**: the starter (recorded by email) always drives; everyone else joins as a viewer
  unless the starter granted them the keyboard (grants are per person, so they survive a
  reload and apply to every tab of that person). `read_only` joins stay viewers regardless. A
  grant's email is checked against pair.api.grammar here, where it arrives, and kept in lower
  case. Each grant that changes who may type (not one refused, not one that changes nothing) is
  reported to the broker in the next heartbeat, sent at once (`take_role_changes`): its audit.
  None is ever dropped: while ROLE_CHANGES_KEPT wait unsent, the next grant is refused (`busy`).
- **Size**: drivers' windows decide, and the latest driver to resize (or join) wins, as tmux's
  `window-size latest`; viewers are told the size and show the terminal at it.
- **Lifetime**: the PTY keeps running with nobody attached. When nobody has been attached for
  `Limits.idle_seconds` the shell's process group and the terminal's foreground group get
  SIGHUP, then SIGKILL after `Limits.hangup_grace` if they ignore it. When the shell exits,
  every attachment gets `exit {status}` and the terminal is removed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import getpass
import os
import pwd
import secrets
import signal
import struct
import subprocess
import termios
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

import msgspec
from websockets.exceptions import ConnectionClosed

from pair.api import grammar
from pair.api import terminal as tp
from pair.container.facts import workspace_folder

CHUNK = 64 * 1024
USER_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/games"  # OpenSSH's _PATH_STDPATH, as sshd gives a login
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NO_LOGIN_SHELLS = {"nologin", "false"}
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # base32's, lowercase, as the broker's ids
ROLE_CHANGES_KEPT = 100  # role changes waiting for the next heartbeat (the broker audits as many)
BUSY = "Too many role changes at once; try again in a moment."
RoleChanges = list[tp.RoleChange]  # named here: TerminalManager.list hides the builtin in its class


@dataclass(frozen=True)
class Limits:
    """Bounds of one Space's terminals. Times in seconds, sizes in bytes."""

    max_terminals: int = 10  # open at once in the Space
    idle_seconds: float = 300.0  # nobody attached this long → SIGHUP
    hangup_grace: float = 5.0  # SIGHUP ignored this long → SIGKILL
    scrollback_bytes: int = 256 * 1024
    max_input_bytes: int = tp.MAX_INPUT_BYTES  # one binary frame from a person
    max_control_bytes: int = tp.MAX_CONTROL_BYTES  # one text frame from a person
    output_high_water: int = 1024 * 1024  # unsent bytes of one attachment above which the PTY is not read
    stall_seconds: float = 10.0  # an attachment above the high water this long is closed
    input_high_water: int = 64 * 1024  # bytes queued for the shell above which writers wait


class TerminalError(Exception):
    """A terminal request that cannot be met: `message` is one sentence for people, `code` one of
    `pair.api.terminal.CLOSE_CODES` (or `forbidden`, `busy` for a refused role change)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def started_ended(email: str, *, kicked: bool) -> str:
    """What the others in a terminal `email` started read when it ends because `email` was
    kicked (the owner disconnected them; their access goes on) or lost access to the Space."""
    if kicked:
        return f"The Space's owner disconnected {email}, so the terminal they started ended."
    return f"{email}'s access to this Space ended, so the terminal they started ended."


def new_terminal_id() -> str:
    """`term_` and 60 random bits in lowercase base32 (the grammar of `pair.api.terminal.TerminalId`)."""
    bits = secrets.randbits(60)
    return "term_" + "".join(_ID_ALPHABET[(bits >> shift) & 31] for shift in range(0, 60, 5))


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- the login ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    """Who a terminal's shell runs as, and where: what `login_for` decided."""

    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups, as initgroups(3) would set them
    home: str
    shell: str  # absolute path; argv[0] becomes "-" + its basename
    cwd: str
    env: dict[str, str]


def utf8_locale(env: Mapping[str, str]) -> str:
    """The container's own UTF-8 LANG if it has one, else C.UTF-8 (built into glibc ≥ 2.35,
    shipped by Debian and Ubuntu before that; musl treats every locale as UTF-8)."""
    lang = env.get("LC_ALL") or env.get("LANG") or ""
    return lang if lang.replace("-", "").lower().endswith(".utf8") else "C.UTF-8"


def login_for(user: str, env: Mapping[str, str] | None = None, *, shell: str | None = None) -> Login:
    """The login of `user` from the passwd and group databases. `env` is the container's
    environment (for the workspace folder and locale); `shell` overrides the passwd entry's.
    Raises TerminalError (`spawn_failed`) for an unknown user or a shell that refuses logins."""
    env = os.environ if env is None else env
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        message = f'The Space\'s login user "{user}" does not exist in the container.'
        raise TerminalError(message, "spawn_failed") from None
    shell = shell or entry.pw_shell or "/bin/sh"
    if os.path.basename(shell) in NO_LOGIN_SHELLS or not os.access(shell, os.X_OK):
        raise TerminalError(f'The login user "{user}" has no usable login shell ({shell}).', "spawn_failed")
    home = entry.pw_dir if os.path.isdir(entry.pw_dir) else "/"
    login_env = {
        "HOME": entry.pw_dir,
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
        "SHELL": shell,
        "PATH": ROOT_PATH if entry.pw_uid == 0 else USER_PATH,
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",  # xterm.js draws 24-bit colour
        "LANG": utf8_locale(env),
    }
    return Login(
        user=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
        home=home,
        shell=shell,
        cwd=workspace_folder(env) or home,
        env=login_env,
    )


def _take_controlling_terminal() -> None:
    # Runs in the child between fork and exec, after setsid: stdin is the PTY's slave.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def set_size(fd: int, cols: int, rows: int) -> None:
    """Set a PTY's window size (TIOCSWINSZ); the kernel sends SIGWINCH to its foreground group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def spawn(login: Login, cols: int, rows: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start `login`'s shell on a new PTY of `cols`×`rows`; returns the process and the
    non-blocking master fd (the caller closes it, and reaps the process: `wait_exit`).
    Raises TerminalError (`spawn_failed`). Popen directly rather than asyncio's subprocess
    API: uvloop's refuses `user`/`group`/`extra_groups`."""
    identity: dict[str, Any] = {}
    if os.geteuid() != login.uid:
        if os.geteuid() != 0:
            raise TerminalError(
                f'The agent runs as "{getpass.getuser()}" and cannot start a shell as "{login.user}".', "spawn_failed"
            )
        identity = {"user": login.uid, "group": login.gid, "extra_groups": list(login.groups)}
    master, slave = os.openpty()
    try:
        set_size(master, cols, rows)
        attrs = termios.tcgetattr(slave)
        attrs[0] |= getattr(termios, "IUTF8", 0o40000)  # the line discipline erases whole UTF-8 characters
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        for cwd in dict.fromkeys((login.cwd, login.home, "/")):
            try:
                process = subprocess.Popen(
                    ["-" + os.path.basename(login.shell)],
                    executable=login.shell,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=login.env,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=_take_controlling_terminal,  # one ioctl in the child: see the module docstring
                    **identity,
                )
                break
            except OSError as exc:
                if exc.filename != cwd or cwd == "/":
                    raise
    except OSError as exc:
        os.close(master)
        message = f"The shell {login.shell} could not be started ({exc.strerror or exc})."
        raise TerminalError(message, "spawn_failed") from exc
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return process, master


async def wait_exit(process: subprocess.Popen[bytes]) -> int:
    """Wait for `process` without blocking the loop or a thread: a pidfd (Linux ≥ 5.3) becomes
    readable when it exits; elsewhere a thread waits. Returns Popen's returncode (-N: signal N)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return await asyncio.to_thread(process.wait)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return process.wait()


# -- scrollback -----------------------------------------------------------------------------


class Scrollback:
    """The newest `limit` bytes a terminal wrote, in chunks (no copying of the whole on append)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a scrollback holds at least one byte")
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self.trimmed = False  # older bytes were dropped

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        if not data:
            return
        if len(data) >= self.limit:
            self.trimmed = self.trimmed or self._size > 0 or len(data) > self.limit
            self._chunks = collections.deque([bytes(data[-self.limit :])])
            self._size = self.limit
            return
        if self._chunks and len(self._chunks[-1]) < 4096:
            self._chunks[-1] += data  # keep small writes (echoed keystrokes) from making many chunks
        else:
            self._chunks.append(bytes(data))
        self._size += len(data)
        while self._size > self.limit:
            self.trimmed = True
            excess = self._size - self.limit
            first = self._chunks[0]
            if len(first) <= excess:
                self._chunks.popleft()
                self._size -= len(first)
            else:
                self._chunks[0] = first[excess:]
                self._size -= excess

    def __bytes__(self) -> bytes:
        return b"".join(self._chunks)

    def replay(self) -> bytes:
        """What a new attachment is sent: the kept bytes, from a character boundary when the
        trim cut a UTF-8 sequence (up to 3 continuation bytes skipped)."""
        data = bytes(self)
        start = 0
        if self.trimmed:
            while start < min(3, len(data)) and 0x80 <= data[start] < 0xC0:
                start += 1
        return data[start:]


# -- attachments ----------------------------------------------------------------------------

Output = bytes | tp.ServerMessage


class Attachment:
    """One person's view of a terminal (a tab, or a CLI): iterate it for what to send them
    (`bytes` of output, or `pair.api.terminal.ServerMessage`s; it ends after `exit` or `closed`);
    feed it what they send with `write` (binary frames) and `control` (text frames)."""

    def __init__(self, terminal: Terminal, email: str, role: tp.Role, read_only: bool) -> None:
        self.id = secrets.token_hex(6)
        self.terminal = terminal
        self.email = email
        self.role: tp.Role = role
        self.read_only = read_only
        self.since = _now()
        self.pending = 0  # output bytes queued and not yet taken
        self.finished = False  # the last message is queued; nothing more will be
        self._items: collections.deque[bytearray | tp.ServerMessage] = collections.deque()
        self._wakeup = asyncio.Event()
        self._stall: asyncio.TimerHandle | None = None

    def person(self) -> tp.Person:
        return tp.Person(email=self.email, role=self.role, since=self.since)

    # output, as the terminal hands it over

    def _push(self, data: bytes) -> None:
        last = self._items[-1] if self._items else None
        if isinstance(last, bytearray) and len(last) + len(data) <= CHUNK:
            last += data  # small reads coalesce into frames of up to CHUNK bytes
        else:
            self._items.append(bytearray(data))
        self.pending += len(data)
        self._wakeup.set()

    def _send(self, message: tp.ServerMessage) -> None:
        if not self.finished:
            self._items.append(message)
            self._wakeup.set()

    def _finish(self, message: tp.ServerMessage, *, discard_output: bool = False) -> None:
        if self.finished:
            return
        if discard_output:
            self._items.clear()
            self.pending = 0
        self._items.append(message)
        self.finished = True
        self._wakeup.set()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def __aiter__(self) -> AsyncIterator[Output]:
        return self

    async def __anext__(self) -> Output:
        while not self._items:
            if self.finished:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._items.popleft()
        if isinstance(item, bytearray):
            self.pending -= len(item)
            self.terminal._flow()
            return bytes(item)
        return item

    # input, from the person

    async def write(self, data: bytes) -> None:
        """Keystrokes (one binary frame). Dropped unless this attachment drives; a frame larger
        than `Limits.max_input_bytes` closes it (`too_large`). Waits while the shell is behind."""
        if self.finished:
            return
        if len(data) > self.terminal.limits.max_input_bytes:
            self.terminal._close_attachment(
                self, tp.Closed(reason="A message to the terminal was too large.", code="too_large")
            )
            return
        if self.role == "driver" and data:
            await self.terminal._write(data)

    async def control(self, frame: str | bytes) -> None:
        """One text frame: `resize` or `grant`. A frame that is not one, or a grant whose email
        is not an address (pair.api.grammar; it is kept in lower case), is answered `error`
        (`bad_message`); one above `Limits.max_control_bytes` closes the attachment."""
        if self.finished:
            return
        if len(frame) > self.terminal.limits.max_control_bytes:
            self.terminal._close_attachment(
                self, tp.Closed(reason="A message to the terminal was too large.", code="too_large")
            )
            return
        try:
            message = tp.decode_client(frame)
        except msgspec.MsgspecError as exc:
            self._send(tp.Refused(message=f"That was not a terminal message: {exc}.", code="bad_message"))
            return
        if isinstance(message, tp.Resize):
            if self.role == "driver":
                self.terminal.resize(message.cols, message.rows)
        else:
            try:
                email = grammar.email_address(message.email)  # a person's text, checked where it arrives
            except grammar.Invalid as exc:
                self._send(tp.Refused(message=f"{exc.message} {exc.hint}", code="bad_message"))
                return
            try:
                self.terminal.set_role(email, message.role, by=self.email)
            except TerminalError as exc:
                self._send(tp.Refused(message=exc.message, code=exc.code))

    def detach(self) -> None:
        """Leave (the person's socket closed). Idempotent."""
        self.terminal._detach(self)


# -- a terminal -----------------------------------------------------------------------------


class Terminal:
    """One shell on one PTY, and the people attached to it. Made by `TerminalManager.open`."""

    def __init__(
        self,
        manager: TerminalManager,
        terminal_id: str,
        started_by: str,
        process: subprocess.Popen[bytes],
        master: int,
        cols: int,
        rows: int,
    ) -> None:
        self.manager = manager
        self.id = terminal_id
        self.started_by = started_by
        self.started_at = _now()
        self.process = process
        self.pid = process.pid
        self.cols, self.rows = cols, rows
        self.scrollback = Scrollback(self.limits.scrollback_bytes)
        self.drivers: dict[str, None] = {started_by: None}  # ordered set: the starter first
        self.attachments: dict[str, Attachment] = {}
        self.exit_status: int | None = None
        self.ending = False  # hung up or ended: nobody new attaches
        self.ended = asyncio.Event()  # the shell is gone and every attachment has its last message
        self._loop = asyncio.get_running_loop()
        self._master: int | None = master
        self._reading = True
        self._input = bytearray()
        self._input_room = asyncio.Event()
        self._input_room.set()
        self._idle: asyncio.TimerHandle | None = None
        self._kill: asyncio.TimerHandle | None = None
        self._loop.add_reader(master, self._readable)
        self._waiter = asyncio.create_task(self._wait())
        self._arm_idle()

    @property
    def limits(self) -> Limits:
        """The manager's, so a new idle limit from the broker applies to open terminals too."""
        return self.manager.limits

    def info(self) -> tp.TerminalInfo:
        return tp.TerminalInfo(
            id=self.id,
            started_by=self.started_by,
            started_at=self.started_at,
            cols=self.cols,
            rows=self.rows,
            drivers=list(self.drivers),
            people=self.people(),
        )

    def people(self) -> list[tp.Person]:
        return [a.person() for a in self.attachments.values()]

    # attaching

    def attach(
        self, email: str, *, read_only: bool = False, cols: int | None = None, rows: int | None = None
    ) -> Attachment:
        """A new attachment for `email`: a driver if they started the terminal or were granted
        the keyboard (and did not ask `read_only`), else a viewer. It starts with `hello`, then
        the scrollback, then live output; a driver's `cols`/`rows` resize the terminal first."""
        if self.ending or self._master is None:
            raise TerminalError("That terminal has ended.", "not_found")
        role: tp.Role = "driver" if email in self.drivers and not read_only else "viewer"
        attachment = Attachment(self, email, role, read_only)
        if role == "driver" and cols is not None and rows is not None:
            self.resize(cols, rows)
        attachment._send(
            tp.Hello(
                terminal_id=self.id,
                email=email,
                role=role,
                started_by=self.started_by,
                started_at=self.started_at,
                cols=self.cols,
                rows=self.rows,
            )
        )
        replay = self.scrollback.replay()
        for start in range(0, len(replay), CHUNK):
            attachment._push(replay[start : start + CHUNK])
        self.attachments[attachment.id] = attachment
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.manager._log(f"terminal {self.id}: {email} attached as {role}")
        self._people_changed()
        self.manager._changed()
        self._flow()
        return attachment

    def attach_control(self, email: str) -> Attachment:
        """A control-only attachment for `email` (`JoinTerminal.control`: `pair spaces
        terminal-role`): `hello` (with `control`), then only the answers to its control messages
        (a grant's `error`); no scrollback or output, so it watches nothing, is not one of the
        people attached and keeps no idle terminal alive. Raises TerminalError (`not_found`)."""
        if self.ending or self._master is None:
            raise TerminalError("That terminal has ended.", "not_found")
        attachment = Attachment(self, email, "viewer", True)
        attachment._send(
            tp.Hello(
                terminal_id=self.id,
                email=email,
                role="viewer",
                started_by=self.started_by,
                started_at=self.started_at,
                cols=self.cols,
                rows=self.rows,
                control=True,
            )
        )
        return attachment

    def _detach(self, attachment: Attachment) -> None:
        if self.attachments.pop(attachment.id, None) is None:
            return
        attachment._finish(tp.Closed(reason="You left the terminal.", code="ended"))
        self.manager._log(f"terminal {self.id}: {attachment.email} left")
        self._people_changed()
        self.manager._changed()
        self._flow()
        self._arm_idle()

    def _close_attachment(self, attachment: Attachment, message: tp.ServerMessage, *, discard: bool = False) -> None:
        attachment._finish(message, discard_output=discard)
        self._detach(attachment)

    def _people_changed(self) -> None:
        message = tp.Attached(people=self.people())
        for attachment in self.attachments.values():
            attachment._send(message)

    def _arm_idle(self) -> None:
        if self.attachments or self._idle is not None or self.exit_status is not None:
            return
        if self.limits.idle_seconds > 0:
            self._idle = self._loop.call_later(self.limits.idle_seconds, self._idle_out)

    def _idle_out(self) -> None:
        self._idle = None
        if not self.attachments:
            self.manager._log(f"terminal {self.id}: nobody attached for {self.limits.idle_seconds:g} s; hanging up")
            self.hangup()

    # roles and size

    def set_role(self, email: str, role: tp.Role, *, by: str) -> None:
        """Let `email` type (`driver`) or not (`viewer`); only the starter (`by`) may, and the
        starter stays a driver. Applies to every attachment of that person (except read-only
        ones) and to their later joins. A grant that changes nothing (the person already has
        that role) does nothing: no log line, no new listing. Raises TerminalError (`forbidden`; `busy`
        while ROLE_CHANGES_KEPT changes wait for the next heartbeat, so none goes unaudited)."""
        if by != self.started_by:
            message = f"Only {self.started_by}, who started this terminal, decides who may type."
            raise TerminalError(message, "forbidden")
        if email == self.started_by:
            if role != "driver":
                raise TerminalError("The person who started a terminal always drives it.", "forbidden")
            return
        if (email in self.drivers) == (role == "driver"):
            return
        if not self.manager._role_change_room():
            raise TerminalError(BUSY, "busy")  # refused rather than a change the audit log never hears of
        if role == "driver":
            self.drivers[email] = None
        else:
            del self.drivers[email]
        changed = False
        for attachment in self.attachments.values():
            if attachment.email == email and not attachment.read_only and attachment.role != role:
                attachment.role = role
                attachment._send(tp.RoleChanged(role=role))
                changed = True
        self.manager._log(f"terminal {self.id}: {by} made {email} a {role}")
        self.manager._role_changed(tp.RoleChange(terminal_id=self.id, email=email, role=role, by=by))
        if changed:
            self._people_changed()
        self.manager._changed()

    def resize(self, cols: int, rows: int) -> None:
        """Set the PTY's size (each 1..1000; the latest driver's wins) and tell everyone."""
        if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
            raise ValueError(f"a terminal is 1 to 1000 columns and rows, not {cols}x{rows}")
        if (cols, rows) == (self.cols, self.rows) or self._master is None:
            return
        set_size(self._master, cols, rows)
        self.cols, self.rows = cols, rows
        message = tp.SizeChanged(cols=cols, rows=rows)
        for attachment in self.attachments.values():
            attachment._send(message)

    # the PTY

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process has the slave open any more; the waiter reports the exit
            data = b""
        if not data:
            self._pause()
            return
        self._output(data)

    def _output(self, data: bytes) -> None:
        self.scrollback.append(data)
        for attachment in self.attachments.values():
            attachment._push(data)
        self._flow()

    def _pause(self) -> None:
        if self._reading and self._master is not None:
            self._loop.remove_reader(self._master)
        self._reading = False

    def _flow(self) -> None:
        """Pause reading while an attachment is above the high water; resume when all are below
        half of it. Arms (or disarms) each attachment's stall timer."""
        high = self.limits.output_high_water
        over = False
        for attachment in self.attachments.values():
            if attachment.pending > high:
                over = True
                if attachment._stall is None:
                    attachment._stall = self._loop.call_later(self.limits.stall_seconds, self._stalled, attachment)
            elif attachment._stall is not None and attachment.pending <= high // 2:
                attachment._stall.cancel()
                attachment._stall = None
        if over:
            self._pause()
        elif (
            not self._reading
            and self._master is not None
            and self.exit_status is None
            and all(a.pending <= high // 2 for a in self.attachments.values())
        ):
            self._loop.add_reader(self._master, self._readable)
            self._reading = True

    def _stalled(self, attachment: Attachment) -> None:
        attachment._stall = None
        if attachment.pending > self.limits.output_high_water:
            self.manager._log(f"terminal {self.id}: {attachment.email} fell behind; closing their attachment")
            reason = "Your connection fell behind the terminal's output; reconnect to catch up."
            self._close_attachment(attachment, tp.Closed(reason=reason, code="too_slow"), discard=True)

    async def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        if not self._input:
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            except OSError:
                return  # the shell is gone
            data = data[written:]
            if not data:
                return
            self._loop.add_writer(self._master, self._writable)
        self._input += data
        while len(self._input) > self.limits.input_high_water and self._master is not None:
            self._input_room.clear()
            await self._input_room.wait()

    def _writable(self) -> None:
        assert self._master is not None
        try:
            written = os.write(self._master, self._input)
        except BlockingIOError:
            return
        except OSError:
            written = len(self._input)  # the shell is gone: nothing will read it
        del self._input[:written]
        if not self._input:
            self._loop.remove_writer(self._master)
        if len(self._input) <= self.limits.input_high_water:
            self._input_room.set()

    # the end

    def _signal(self, signum: int) -> None:
        groups = {self.pid}
        if self._master is not None:
            with contextlib.suppress(OSError):
                groups.add(os.tcgetpgrp(self._master))  # the foreground job (vim, a build...)
        for group in groups:
            if group > 0:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signum)

    def hangup(self) -> None:
        """SIGHUP the shell's process group and the foreground job; SIGKILL them after
        `Limits.hangup_grace` if they are still there. The exit is reported as usual."""
        if self.exit_status is not None:
            return
        self.ending = True
        self._signal(signal.SIGHUP)
        if self._kill is None:
            self._kill = self._loop.call_later(self.limits.hangup_grace, self._signal, signal.SIGKILL)

    def end(self, reason: str, code: str = "ended") -> None:
        """End the terminal for everyone: each attachment gets `closed {reason, code}` now, and
        the shell is hung up."""
        for attachment in list(self.attachments.values()):
            self._close_attachment(attachment, tp.Closed(reason=reason, code=code))
        self.hangup()

    async def _wait(self) -> None:
        self._exited(await wait_exit(self.process))

    def _exited(self, returncode: int) -> None:
        for timer in (self._idle, self._kill):
            if timer is not None:
                timer.cancel()
        self._idle = self._kill = None
        master = self._master
        assert master is not None
        self._pause()
        if self._input:
            self._loop.remove_writer(master)
        # What the shell wrote last is still in the PTY: give it to everyone before the exit.
        for _ in range(64):  # bounded: a background job may keep writing to the slave
            try:
                data = os.read(master, CHUNK)
            except OSError:  # EAGAIN (nothing more now) or EIO (slave closed)
                break
            if not data:
                break
            self._output(data)
        self._master = None
        os.close(master)  # hangs up whatever is left in the session
        self._input_room.set()
        signame = ""
        if returncode < 0:
            with contextlib.suppress(ValueError):
                signame = signal.Signals(-returncode).name
        self.exit_status = 128 - returncode if returncode < 0 else returncode
        message = tp.Exited(status=self.exit_status, signal=signame)
        for attachment in list(self.attachments.values()):
            attachment._finish(message)
        self.attachments.clear()
        self.manager._removed(self)
        self.ended.set()


# -- the manager ----------------------------------------------------------------------------


class TerminalManager:
    """A Space's terminals. `login_user` (assignable: the broker's snapshot names it) is whom
    shells run as; `shell` overrides their passwd shell; `env` is the container's environment."""

    def __init__(
        self,
        login_user: str = "",
        *,
        limits: Limits | None = None,
        shell: str | None = None,
        env: Mapping[str, str] | None = None,
        log: Callable[[str], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.login_user = login_user or getpass.getuser()
        self.limits = limits or Limits()
        self.shell = shell
        self.env = os.environ if env is None else env
        self.terminals: dict[str, Terminal] = {}
        self._log = log or (lambda _line: None)
        self._role_changes: collections.deque[tp.RoleChange] = collections.deque()
        # Called when the listing changes: a terminal opened or ended, someone attached, left or
        # changed role (not on resizes, which a dragged window sends many of).
        self._changed = on_change or (lambda: None)

    def list(self) -> list[tp.TerminalInfo]:
        return [terminal.info() for terminal in self.terminals.values()]

    def take_role_changes(self) -> RoleChanges:
        """The role changes carried out since the last call, oldest first (for the broker's
        audit, `Heartbeat.roles`): only grants that changed who may type. At most
        ROLE_CHANGES_KEPT wait: `Terminal.set_role` refuses more (`busy`) rather than drop any."""
        changes = list(self._role_changes)
        self._role_changes.clear()
        return changes

    def _role_change_room(self) -> bool:
        return len(self._role_changes) < ROLE_CHANGES_KEPT

    def _role_changed(self, change: tp.RoleChange) -> None:
        self._role_changes.append(change)

    def get(self, terminal_id: str) -> Terminal:
        """Raises TerminalError (`not_found`)."""
        terminal = self.terminals.get(terminal_id)
        if terminal is None:
            raise TerminalError("That terminal is not open any more (it ended, or never existed).", "not_found")
        return terminal

    async def open(self, email: str, cols: int = 80, rows: int = 24) -> Terminal:
        """Start a terminal for `email` (its starter). Raises TerminalError (`limit`, `spawn_failed`)
        and ValueError for a size outside 1..1000."""
        if not (1 <= cols <= 1000 and 1 <= rows <= 1000):
            raise ValueError(f"a terminal is 1 to 1000 columns and rows, not {cols}x{rows}")
        if len(self.terminals) >= self.limits.max_terminals:
            raise TerminalError(
                f"This Space already has {self.limits.max_terminals} terminals open; close one first.", "limit"
            )
        login = login_for(self.login_user, self.env, shell=self.shell)
        process, master = spawn(login, cols, rows)
        terminal = Terminal(self, new_terminal_id(), email, process, master, cols, rows)
        self.terminals[terminal.id] = terminal
        self._log(f"terminal {terminal.id}: opened by {email} (pid {terminal.pid}, as {login.user}, in {login.cwd})")
        return terminal

    async def connect(self, target: tp.TerminalTarget) -> Attachment:
        """What a stream to a PTY target attaches to: a new terminal (`open`) or a running one
        (`join`). Raises TerminalError (`not_found`, `limit`, `spawn_failed`)."""
        if isinstance(target, tp.OpenTerminal):
            terminal = await self.open(target.email, target.cols, target.rows)
            return terminal.attach(target.email)
        terminal = self.get(target.terminal_id)
        if target.control:
            return terminal.attach_control(target.email)
        return terminal.attach(target.email, read_only=target.read_only, cols=target.cols, rows=target.rows)

    def set_role(self, terminal_id: str, email: str, role: tp.Role, *, by: str) -> None:
        """`Terminal.set_role` by id. Raises TerminalError (`not_found`, `forbidden`)."""
        self.get(terminal_id).set_role(email, role, by=by)

    def revoke(self, email: str, reason: str, *, kicked: bool = False) -> None:
        """`email` lost access to the Space, or was `kicked` (the owner ended their streams;
        their access goes on): their attachments close (`revoked`, with `reason`), their grants
        go, and the terminals they started end for everyone, who are told which it was."""
        for terminal in list(self.terminals.values()):
            for attachment in list(terminal.attachments.values()):
                if attachment.email == email:
                    terminal._close_attachment(attachment, tp.Closed(reason=reason, code="revoked"))
            if terminal.started_by == email:
                terminal.end(started_ended(email, kicked=kicked))
            else:
                terminal.drivers.pop(email, None)

    def end_all(self, reason: str, code: str = "ended") -> None:
        """End every terminal (the Space goes down, the agent stops)."""
        for terminal in list(self.terminals.values()):
            terminal.end(reason, code)

    async def aclose(self, reason: str = "The container's agent is stopping.") -> None:
        """End every terminal and wait until their shells are gone (at most the hang-up grace)."""
        terminals = list(self.terminals.values())
        self.end_all(reason, "agent_stopping")
        await asyncio.gather(*(terminal.ended.wait() for terminal in terminals))

    def _removed(self, terminal: Terminal) -> None:
        if self.terminals.pop(terminal.id, None) is not None:
            status = terminal.exit_status
            self._log(f"terminal {terminal.id}: the shell ended (status {status})")
            self._changed()


# -- a person's stream ----------------------------------------------------------------------


class MessageSocket(Protocol):
    """What `pump` needs of a stream: a websockets connection fits."""

    async def send(self, message: str | bytes) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


async def pump(attachment: Attachment, socket: MessageSocket) -> None:
    """Copy between `attachment` and a person's stream until either ends: output as binary
    frames, messages as text frames; binary frames in are keystrokes, text frames control.
    Detaches on return; the caller closes the socket (after `exit`/`closed` was sent)."""

    async def to_person() -> None:
        async for item in attachment:
            await socket.send(item if isinstance(item, bytes) else tp.encode(item))

    async def from_person() -> None:
        async for frame in socket:
            if isinstance(frame, bytes):
                await attachment.write(frame)
            else:
                await attachment.control(frame)

    tasks = [asyncio.create_task(to_person()), asyncio.create_task(from_person())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[1] in done and not attachment.finished:
            attachment.detach()  # the person left: their last message goes nowhere
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await task
        attachment.detach()
