"""One person's terminal stream in the local terminal, for `pair spaces terminal` (pair.cli.terminal):
keystrokes out as binary frames, the shell's output in, pair.api.terminal's messages handled.

The shell lives in the container and outlives this stream, so a stream that drops for a reason
that is not final (the broker restarting, a replica failing over, a network blip: a close code
pair.api.closecodes.transient admits, or `closed {too_slow}`) is joined again, by the terminal's
id, with the role rules of any join (a starter is a driver again, a `--read-only` joiner stays a
viewer), after a backoff (`backoff`: 0.5 s doubling to 10 s, with jitter), for at most GIVE_UP
seconds. The screen is reset before the scrollback the agent sends on joining is replayed, as
the web page does, so nothing shows twice. Final ends (the shell exited, access revoked, the
terminal gone) are never retried.

Loaded only when such a command runs (asyncio, websockets, termios).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import sys
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from pair.api import terminal as tp
from pair.api.closecodes import SENTENCES, CloseCode, for_status, transient
from pair.api.errors import PairError
from pair.printable import printable

READ_CHUNK = 16 * 1024  # bytes of stdin per frame, well below the protocol's MAX_INPUT_BYTES
LOST = "The connection to the broker was lost."
CONFIRM_POLL = 0.2  # seconds between looks at the Space's listing while a grant is confirmed
GIVE_UP = 120.0  # seconds without a successful reconnect after which pair gives up
CTRL_C = 0x03  # in raw mode Ctrl-C is this byte, not SIGINT: while disconnected it stops pair
RESET = b"\x1bc"  # RIS (ECMA-48 8.3.105): a clean screen for the scrollback to redraw on


class Refused(PairError):
    """The broker refused the stream with an HTTP `status` before the WebSocket opened."""

    def __init__(self, message: str, hint: str, status: int) -> None:
        super().__init__(message, hint)
        self.status = status


class Unreachable(PairError):
    """The broker could not be reached (no connection, no answer in time, a broken handshake)."""


async def open_stream(url: str, headers: dict[str, str]) -> ClientConnection:
    """The terminal stream at `url`. Raises Refused (with the broker's words and the HTTP
    status) when the broker refuses it, Unreachable when it cannot be reached."""
    try:
        return await connect(
            url,
            additional_headers=headers,
            compression=None,
            max_size=None,
            open_timeout=20,
            close_timeout=2,
            ping_interval=20,
            ping_timeout=20,
        )
    except InvalidStatus as exc:
        try:
            body = json.loads(exc.response.body or b"{}")
        except ValueError:
            body = {}
        status = exc.response.status_code
        raise Refused(
            printable(str(body.get("message") or f"The broker refused the terminal (HTTP {status}).")),
            printable(str(body.get("detail") or "")),
            status,
        ) from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise Unreachable(
            f"Cannot reach the broker ({type(exc).__name__}).", "Check that the broker is running and reachable."
        ) from None


def backoff(attempt: int, jitter: float) -> float:
    """Seconds to wait before reconnect attempt `attempt` (1, 2, …): BACKOFF_FIRST doubling up to
    BACKOFF_MAX, times 0.5 + `jitter`/2 for `jitter` in [0, 1) (random.random()): "equal jitter",
    so the many clients a broker restart dropped at once do not all come back at once (the
    web page's terminal.js waits the same way)."""
    base: float = min(tp.BACKOFF_MAX, tp.BACKOFF_FIRST * 2.0 ** min(max(attempt, 1) - 1, 16))
    return base * (0.5 + jitter / 2)


@dataclass(frozen=True)
class Dropped:
    """The stream ended for a reason that is not final: join the terminal again."""


DROPPED = Dropped()


def closing(code: int, reason: str) -> Dropped | str:
    """How a stream that closed with `code` and `reason` (without a `closed` or `exit` message
    first) ended: DROPPED if it may be joined again (pair.api.closecodes.transient), else the
    one sentence that says why it ended (the broker's reason, or the code's SENTENCES)."""
    return DROPPED if transient(code) else why_closed(code, reason)


def why_closed(code: int, reason: str) -> str:
    """The one sentence a close with `code` and `reason` says: the broker's reason, or the code's
    SENTENCES, or LOST; printable."""
    return printable(reason or SENTENCES.get(code, "") or LOST)


def _wake(readable: asyncio.Future[None]) -> None:
    """loop.add_reader's callback: stdin has bytes (a reader can fire again before the future is awaited)."""
    if not readable.done():
        readable.set_result(None)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    readable: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, _wake, readable)
    try:
        await readable
    finally:
        loop.remove_reader(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[written:]


def _window(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return (min(max(size.columns, 1), 1000), min(max(size.lines, 1), 1000))


# The URL that joins terminal ID again, at the local window's size (columns, rows) if known.
RejoinUrl = Callable[[str, "tuple[int, int] | None"], str]


class TerminalStream:
    """The stream between this terminal (stdin, stdout) and a shell in the Space, across
    reconnects (`ws` is the current connection)."""

    def __init__(self, ws: ClientConnection, space: str, stdin: int, stdout: int, raw: bool) -> None:
        self.ws = ws
        self.space = space
        self.stdin = stdin
        self.stdout = stdout
        self.raw = raw
        self.role: tp.Role = "viewer"
        self.terminal_id = ""  # once the first `hello` named it
        self.rejoining = False  # the next `hello` is a reconnect's
        self.stopped: int = 0  # the signal that stopped us (SIGINT for Ctrl-C while disconnected)
        self._stop = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._status_shown = False
        # While disconnected: when to give up, and the attempts made. Kept until a `hello`, so a
        # stream that opens and drops again before the agent answers is no successful reconnect.
        self._deadline: float | None = None
        self._attempts = 0

    def note(self, text: str, *, lead: bool = True) -> None:
        """A line for the person on stderr (between the shell's output, so CR LF in raw mode,
        on a line of its own unless not `lead`: at the top of a clean screen)."""
        end = "\r\n" if self.raw else "\n"
        self._status_shown = False
        sys.stderr.write(f"{end if self.raw and lead else ''}pair: {printable(text)}{end}")
        sys.stderr.flush()

    def status(self, text: str) -> None:
        """The one status line while disconnected: rewritten in place in a terminal (each attempt
        replaces the last), a line each otherwise."""
        if not self.raw:
            sys.stderr.write(f"pair: {text}\n")
        elif self._status_shown:
            sys.stderr.write(f"\r\x1b[Kpair: {text}")
        else:
            sys.stderr.write(f"\r\npair: {text}")
        self._status_shown = self.raw
        sys.stderr.flush()

    def stop(self, signum: int) -> None:
        self.stopped = signum
        self._stop.set()

    def resized(self) -> None:
        """SIGWINCH: a driver's window decides the terminal's size."""
        size = _window(self.stdout)
        if size is None or self.role != "driver":
            return
        self._send(tp.encode(tp.Resize(cols=size[0], rows=size[1])))

    def _send(self, message: str | bytes) -> None:
        task = asyncio.create_task(self._send_now(self.ws, message))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    @staticmethod
    async def _send_now(ws: ClientConnection, message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(message)

    async def _keys(self) -> None:
        """stdin to the shell, as it comes (the agent drops it while we are a viewer)."""
        while True:
            await _readable(self.stdin)
            try:
                data = os.read(self.stdin, READ_CHUNK)
            except BlockingIOError:
                continue
            if not data:
                return  # end of input (a pipe): the shell goes on until it exits
            try:
                await self.ws.send(data)
            except ConnectionClosed:
                return

    def _hello(self, message: tp.Hello) -> None:
        was, self.role = self.role, message.role
        self.terminal_id = message.terminal_id
        self._deadline, self._attempts = None, 0
        if self.rejoining:
            self.rejoining = False
            if self.raw:
                _write_all(self.stdout, RESET)  # the scrollback follows: redraw rather than repeat
            changed = "" if was == self.role else " You may type now." if self.role == "driver" else " You watch now."
            self.note(f"Reconnected.{changed}", lead=not self.raw)
            self.resized()  # the window may have changed while we were away
            return
        how = "may type" if message.role == "driver" else "watch (read-only)"
        self.note(
            f'terminal {message.terminal_id} in "{self.space}", started by {message.started_by}; '
            f"you {how}. Teammates join with `pair spaces terminal {self.space} --join "
            f"{message.terminal_id}`."
        )

    async def _output(self) -> int | Dropped:
        """The shell's output to stdout until the stream ends: pair's exit status when it ended
        for good (the reason said on stderr), or Dropped when it may be joined again."""
        try:
            async for frame in self.ws:
                if isinstance(frame, bytes):
                    _write_all(self.stdout, frame)
                    continue
                try:
                    message = tp.decode_server(frame)
                except msgspec.MsgspecError:
                    continue  # a newer agent's message
                if isinstance(message, tp.Hello):
                    self._hello(message)
                elif isinstance(message, tp.RoleChanged):
                    self.role = message.role
                    self.note("You may type now." if message.role == "driver" else "You watch now (read-only).")
                    self.resized()
                elif isinstance(message, tp.Refused):
                    self.note(message.message)
                elif isinstance(message, tp.Exited):
                    return message.status
                elif isinstance(message, tp.Closed):
                    if message.code in tp.REJOINABLE and self.terminal_id:
                        return DROPPED
                    self.note(message.reason)
                    return 1
        except ConnectionClosed:
            pass
        code, reason = self.ws.close_code or CloseCode.ABNORMAL, self.ws.close_reason or ""
        ended = closing(code, reason)
        if isinstance(ended, Dropped):
            if self.terminal_id:
                return ended
            ended = why_closed(code, reason)  # nothing to join yet
        self.note(ended)
        return 1

    async def serve(self) -> int | Dropped:
        """Carry the current stream until it ends: as `_output`, or 128+N when signal N stopped us."""
        keys = asyncio.create_task(self._keys())
        output = asyncio.create_task(self._output())
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait((output, stop), return_when=asyncio.FIRST_COMPLETED)
        for task in (keys, output, stop):
            task.cancel()
        await asyncio.gather(keys, output, stop, *self._sends, return_exceptions=True)
        if output in done and not output.cancelled():
            return output.result()
        return self._stopped()

    def _stopped(self) -> int:
        by = "Ctrl-C" if self.stopped == signal.SIGINT else signal.Signals(self.stopped).name
        rejoin = f" (rejoin it with `pair spaces terminal {self.space} --join {self.terminal_id}`)"
        self.note(f"stopped by {by}; the shell goes on in the Space{rejoin if self.terminal_id else ''}.")
        return 128 + self.stopped

    async def _interrupted(self) -> None:
        """Until a stop signal, or Ctrl-C typed while disconnected (raw mode: a byte, not SIGINT;
        other keys are dropped, not typed into the shell later). A pipe's input is left for the
        next stream."""
        stop = asyncio.create_task(self._stop.wait())
        try:
            while self.raw and not stop.done():
                key = asyncio.create_task(_readable(self.stdin))
                await asyncio.wait((stop, key), return_when=asyncio.FIRST_COMPLETED)
                key.cancel()
                if stop.done():
                    return
                try:
                    data = os.read(self.stdin, READ_CHUNK)
                except BlockingIOError:
                    continue
                if CTRL_C in data:
                    self.stop(signal.SIGINT)
                    return
                if not data:  # the terminal hung up: SIGHUP follows
                    break
            await stop
        finally:
            stop.cancel()

    async def rejoin(self, url: RejoinUrl, headers: dict[str, str], clock: Callable[[], float]) -> int | None:
        """Join the terminal again after the stream dropped: attempts after `backoff`, the status
        line on stderr, until one opens (None: `ws` is the new stream), one is refused for good
        (1, the broker's sentence said), GIVE_UP seconds pass without the agent's `hello` on a
        new stream (1), or Ctrl-C or a signal stops us (128+N)."""
        if self._deadline is None:
            self._deadline = clock() + GIVE_UP
        interrupted = asyncio.create_task(self._interrupted())
        try:
            while True:
                self._attempts += 1
                left = self._deadline - clock()
                if left <= 0:
                    self.note(
                        f"Could not reconnect for {GIVE_UP / 60:g} minutes; the shell may still run in the Space "
                        f"(rejoin it with `pair spaces terminal {self.space} --join {self.terminal_id}`)."
                    )
                    return 1
                delay = min(backoff(self._attempts, random.random()), left)  # noqa: S311 (jitter, not a secret)
                self.status(f"Disconnected; reconnecting in {math.ceil(delay)} s\u2026 (Ctrl-C to stop)")
                waited = asyncio.create_task(asyncio.sleep(delay))
                await asyncio.wait((waited, interrupted), return_when=asyncio.FIRST_COMPLETED)
                waited.cancel()
                if interrupted.done():
                    return self._stopped()
                opening = asyncio.create_task(open_stream(url(self.terminal_id, _window(self.stdout)), headers))
                await asyncio.wait((opening, interrupted), return_when=asyncio.FIRST_COMPLETED)
                if interrupted.done():
                    opening.cancel()
                    with contextlib.suppress(asyncio.CancelledError, PairError):
                        ws = await opening
                        await ws.close()
                    return self._stopped()
                try:
                    self.ws = opening.result()
                except Unreachable:
                    continue
                except Refused as exc:
                    if transient(for_status(exc.status)):
                        continue
                    self.note(f"The terminal cannot be joined again: {exc.message}")
                    return 1
                self.rejoining = True
                return None
        finally:
            interrupted.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await interrupted


async def run(url: str, headers: dict[str, str], space: str, rejoin_url: RejoinUrl) -> int:
    """Attach this terminal to the stream at `url` until the shell exits (its status), the stream
    ends for good (1, with the reason on stderr) or a signal stops us (128+N). A stream that drops
    for a reason that is not final is joined again at `rejoin_url` (`TerminalStream.rejoin`).
    The tty stays raw across reconnects and is restored on every way out. Raises PairError when
    the broker refuses the first stream."""
    ws = await open_stream(url, headers)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    raw = os.isatty(stdin)
    stream = TerminalStream(ws, space, stdin, stdout, raw)
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(stdin) if raw else None
    stops = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    watched = [*stops] + ([signal.SIGWINCH] if raw else [])
    try:
        if raw:
            tty.setraw(stdin)  # no ISIG: Ctrl-C, Ctrl-Z, Ctrl-\ are bytes for the remote shell
        for signum in stops:
            loop.add_signal_handler(signum, stream.stop, signum)
        if raw:
            loop.add_signal_handler(signal.SIGWINCH, stream.resized)
        while True:
            ended = await stream.serve()
            if not isinstance(ended, Dropped):
                return ended
            await stream.ws.close()
            failed = await stream.rejoin(rejoin_url, headers, loop.time)
            if failed is not None:
                return failed
    finally:
        for signum in watched:
            loop.remove_signal_handler(signum)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        await stream.ws.close()


async def grant(
    url: str, headers: dict[str, str], email: str, role: tp.Role, confirmed: Callable[[], bool], wait: float
) -> bool:
    """Attach to the terminal at `url` (control-only) and, as its starter, give `email` the `role`; then
    until `confirmed()` (called in a thread, every CONFIRM_POLL seconds) says it shows, at most
    `wait` seconds: True once it does, False if not in time. Raises PairError when we did not
    start it, it is not open, or the grant is refused (`error`: the broker's or the agent's
    sentence, e.g. the person cannot reach the Space)."""
    loop = asyncio.get_running_loop()
    async with await open_stream(url, headers) as ws:
        sent_at: float | None = None
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), CONFIRM_POLL if sent_at is not None else None)
            except TimeoutError:
                assert sent_at is not None
                if await asyncio.to_thread(confirmed):
                    return True
                if loop.time() - sent_at > wait:
                    return False
                continue
            except ConnectionClosed:
                raise PairError(ws.close_reason or LOST) from None
            if isinstance(frame, bytes):
                continue
            message = tp.decode_server(frame)
            if isinstance(message, tp.Closed):
                raise PairError(message.reason, "`pair spaces terminals` lists the open ones.")
            if isinstance(message, tp.Refused) and sent_at is not None:
                raise PairError(printable(message.message), "Nothing changed.")
            if isinstance(message, tp.Hello) and sent_at is None:
                if message.started_by != message.email:
                    raise PairError(
                        f"Only {message.started_by}, who started this terminal, decides who may type.",
                        "Ask them to run `pair spaces terminal-role`.",
                    )
                await ws.send(tp.encode(tp.Grant(email=email, role=role)))
                sent_at = loop.time()
