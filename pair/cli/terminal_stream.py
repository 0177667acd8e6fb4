"""One person's terminal stream in the local terminal, for `pair spaces terminal` (pair.cli.terminal):
keystrokes out as binary frames, the shell's output in, pair.api.terminal's messages handled.

Loaded only when such a command runs (asyncio, websockets, termios).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import tty
from collections.abc import Callable

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from pair.api import terminal as tp
from pair.api.closecodes import SENTENCES, CloseCode
from pair.api.errors import PairError
from pair.printable import printable

READ_CHUNK = 16 * 1024  # bytes of stdin per frame, well below the protocol's MAX_INPUT_BYTES
LOST = "The connection to the broker was lost."
CONFIRM_POLL = 0.2  # seconds between looks at the Space's listing while a grant is confirmed


async def open_stream(url: str, headers: dict[str, str]) -> ClientConnection:
    """The terminal stream at `url`. Raises PairError with the broker's words when it refuses."""
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
        raise PairError(
            printable(str(body.get("message") or f"The broker refused the terminal (HTTP {status}).")),
            printable(str(body.get("detail") or "")),
        ) from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise PairError(
            f"Cannot reach the broker ({type(exc).__name__}).", "Check that the broker is running and reachable."
        ) from None


def _wake(readable: asyncio.Future[None]) -> None:
    """loop.add_reader's callback: stdin has bytes (a reader can fire again before the future is awaited)."""
    if not readable.done():
        readable.set_result(None)


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


class TerminalStream:
    """The stream between this terminal (stdin, stdout) and a shell in the Space."""

    def __init__(self, ws: ClientConnection, space: str, stdin: int, stdout: int, raw: bool) -> None:
        self.ws = ws
        self.space = space
        self.stdin = stdin
        self.stdout = stdout
        self.raw = raw
        self.role: tp.Role = "viewer"
        self.stopped: int = 0  # the signal that stopped us
        self._stop = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()

    def note(self, text: str) -> None:
        """A line for the person on stderr (between the shell's output, so CR LF in raw mode)."""
        end = "\r\n" if self.raw else "\n"
        sys.stderr.write(f"{end if self.raw else ''}pair: {printable(text)}{end}")
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
        task = asyncio.create_task(self._send_now(message))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send_now(self, message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(message)

    async def _keys(self) -> None:
        """stdin to the shell, as it comes (the agent drops it while we are a viewer)."""
        loop = asyncio.get_running_loop()
        while True:
            readable: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self.stdin, _wake, readable)
            try:
                await readable
            finally:
                loop.remove_reader(self.stdin)
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

    async def _output(self) -> int:
        """The shell's output to stdout until the stream ends; pair's exit status."""
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
                    self.role = message.role
                    how = "may type" if message.role == "driver" else "watch (read-only)"
                    self.note(
                        f'terminal {message.terminal_id} in "{self.space}", started by {message.started_by}; '
                        f"you {how}. Teammates join with `pair spaces terminal {self.space} --join "
                        f"{message.terminal_id}`."
                    )
                elif isinstance(message, tp.RoleChanged):
                    self.role = message.role
                    self.note("You may type now." if message.role == "driver" else "You watch now (read-only).")
                    self.resized()
                elif isinstance(message, tp.Refused):
                    self.note(message.message)
                elif isinstance(message, tp.Exited):
                    return message.status
                elif isinstance(message, tp.Closed):
                    self.note(message.reason)
                    return 1
        except ConnectionClosed:
            pass
        code = self.ws.close_code or CloseCode.ABNORMAL
        reason = self.ws.close_reason or SENTENCES.get(code, "")
        self.note(reason or LOST)
        return 1

    async def serve(self) -> int:
        keys = asyncio.create_task(self._keys())
        output = asyncio.create_task(self._output())
        stop = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait((output, stop), return_when=asyncio.FIRST_COMPLETED)
        for task in (keys, output, stop):
            task.cancel()
        await asyncio.gather(keys, output, stop, *self._sends, return_exceptions=True)
        if output in done and not output.cancelled():
            return output.result()
        self.note(f"stopped by {signal.Signals(self.stopped).name}; the shell goes on in the Space.")
        return 128 + self.stopped


async def run(url: str, headers: dict[str, str], space: str) -> int:
    """Attach this terminal to the stream at `url` until the shell exits (its status), the stream
    ends (1, with the reason on stderr) or a signal stops us (128+N). The tty is restored on
    every way out. Raises PairError when the broker refuses the stream."""
    ws = await open_stream(url, headers)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    raw = os.isatty(stdin)
    stream = TerminalStream(ws, space, stdin, stdout, raw)
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(stdin) if raw else None
    watched = [signal.SIGTERM, signal.SIGHUP] + ([signal.SIGWINCH] if raw else [])
    try:
        if raw:
            tty.setraw(stdin)  # no ISIG: Ctrl-C, Ctrl-Z, Ctrl-\ are bytes for the remote shell
        for signum in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, stream.stop, signum)
        if raw:
            loop.add_signal_handler(signal.SIGWINCH, stream.resized)
        return await stream.serve()
    finally:
        for signum in watched:
            loop.remove_signal_handler(signum)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        await ws.close()


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
