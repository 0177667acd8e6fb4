"""`pair agent`: the long-running side of a Space, run by supervisord.

It holds one WebSocket to the broker (the control channel), authenticated by the agent
credential. Heartbeats with the container's facts ride on it (so the Space shows `running`), and
the broker pushes over it: new authorized keys (a revocation reaches the snapshot in about a
second), the desired state (`down` stops sshd through supervisorctl, `up` starts it, and ends the
terminals), and stream requests: open a stream to a target — sshd, a terminal, a port on
127.0.0.1 — through the allow-list in `pair.container.streams`, and connect it to the broker
(brokers that predate streams send `tunnel`, for sshd). Each heartbeat says whether sshd is
really serving and why not (`pair.container.health`); a change is reported at once. When the
broker is away it reconnects with backoff and jitter (the first retry within a second, so a
restarted broker has its agents back at once); the snapshot carries its own age limit, so `pair
verify` stops trusting it on time whatever happens here. When the credential dies (Space deleted, or re-bootstrapped
elsewhere) it removes the snapshot and ends the terminals, so nobody gets in, and waits for a new
bootstrap. SIGTERM ends it cleanly, telling the broker the Space is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import sys
import time
from collections.abc import Coroutine
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from pair import tls, verify
from pair.api import endpoints as ep
from pair.api import terminal as tp
from pair.api.closecodes import BROKER_RESTARTING, CREDENTIAL_ENDED, CloseCode
from pair.api.models import (
    STREAM_TARGETS,
    AuthorizedKeys,
    BrokerMessage,
    EndTerminals,
    Heartbeat,
    HeartbeatMessage,
    HeartbeatReply,
    PtyTarget,
    ReplyMessage,
    ReportedState,
    SshTarget,
    StreamRefused,
    StreamRequest,
    StreamTarget,
    TcpTarget,
)
from pair.container import facts, listening, streams, supervisor
from pair.container.health import FAILED, SshWatch
from pair.container.home import Home, Registration
from pair.container.terminals import TerminalError, TerminalManager, pump
from pair.files import write_private

FIRST_BACKOFF = 1.0  # seconds before the first retry (jittered down to half); doubles per failure
MAX_BACKOFF = 60.0
IDLE_POLL = 1.0  # how often to look for a (new) registration while there is none that works
WATCH_INTERVAL = 1.0  # how often supervisord is asked about sshd (one XML-RPC call, no process)
# How often the listening ports are read: the kernel walks its whole socket table for
# /proc/net/tcp (15–60 ms on a busy machine), so rarely, and on a thread, never on the loop.
PORTS_INTERVAL = 5.0
RESTART_PATIENCE = 30.0  # seconds of retrying every second after the broker said it restarts
_broker_messages = msgspec.json.Decoder(BrokerMessage)


def log(message: str) -> None:
    print(f"pair agent: {message}", flush=True)


def dial_broker(reg: Registration, path: str, *, control: bool = False) -> connect:
    """A WebSocket to the broker's endpoint `path`, with this container's credential: the control
    channel (`control`: pinged, so a dead broker is noticed) or a stream (unbounded messages, no
    pings: ssh and the terminal protocol keep their connections alive themselves). Compression
    is off: on random bytes it costs ~25x. TLS trust is pair.tls's."""
    url = ep.websocket_url(reg.url, path)
    return connect(
        url,
        ssl=tls.for_url(url),
        additional_headers={"Authorization": f"Bearer {reg.credential}"},
        compression=None,
        open_timeout=10,
        **({"ping_interval": 20, "ping_timeout": 20} if control else {"max_size": None, "ping_interval": None}),
    )


class CredentialDead(Exception):
    pass


class Agent:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home()
        self.stop = asyncio.Event()
        self.facts = facts.collect(self.home.host_key_file, ssh_user_file=self.home.ssh_user_file)
        self.keys_version = ""
        self.snapshot_keys: list[tuple[str, str, str]] | None = None
        self.login_user = "root"
        self.interval = 10.0
        self.sshd_port = self.home.ssh_port()
        self.wanted: str | None = None  # what the broker last asked of sshd: "running" or "stopped"
        self.ssh = SshWatch(self.sshd_port, supervisor.Rpc.open())
        # The snapshot names the user; the broker hears of every change in the list at once.
        self.terminals = TerminalManager(self.facts.login_user or "root", log=log, on_change=self._terminals_changed)
        self.tasks: set[asyncio.Task[None]] = set()  # streams and sshd starts, each collected when done
        self._control: ClientConnection | None = None  # the channel refusals go back on
        self._news = asyncio.Event()  # set when the broker should hear a heartbeat now
        self._recheck = asyncio.Event()  # set when sshd's health must be probed now (an SSH stream failed)
        self._registration_stamp: float | None = None
        self.listening: list[int] = []  # ports listening in the container (not sshd's): candidates to share
        self._ports_read = 0.0  # when they were last read (monotonic)

    def _terminals_changed(self) -> None:
        self._news.set()  # the next heartbeat, sent now, lists them

    # -- snapshot ---------------------------------------------------------------------------

    def write_snapshot(self, reg: Registration, keys: AuthorizedKeys | None, max_age: int) -> None:
        """Replace the snapshot (atomically, 0600), stamped now so `pair verify` can age it."""
        if keys is not None:
            if keys.version != self.keys_version:
                log(f"authorized keys now: {', '.join(sorted({k.email for k in keys.keys})) or 'nobody'}")
            self.keys_version = keys.version
            self.snapshot_keys = [(k.key, k.email, k.role) for k in keys.keys]
            self.login_user = self.terminals.login_user = keys.login_user
        elif self.snapshot_keys is None:
            return  # nothing to re-stamp yet; the next reply carries the keys
        text = verify.render(self.login_user, time.time(), max_age, reg.space_id, self.keys_version, self.snapshot_keys)
        write_private(self.home.snapshot_file, text)

    def revoke_access(self, why: str) -> None:
        if self.home.snapshot_file.exists():
            self.home.snapshot_file.unlink()
            log(f"removed the authorized-keys snapshot: {why}")
        self.keys_version = ""
        self.snapshot_keys = None

    # -- the main loop ----------------------------------------------------------------------

    def _registration_changed(self) -> bool:
        try:
            stamp: float | None = self.home.registration_file.stat().st_mtime
        except FileNotFoundError:
            stamp = None
        changed = stamp != self._registration_stamp
        self._registration_stamp = stamp
        return changed

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        instance_id = self.home.instance_id()
        log(f"started (PAIR_HOME {self.home.root})")
        while not self.stop.is_set():
            self._registration_changed()
            reg = self.home.registration()
            if reg is None:
                await self._idle("not bootstrapped yet; run `pair spaces bootstrap`")
                continue
            try:
                await self._serve(reg, instance_id)
            except CredentialDead as exc:
                if self._registration_changed():
                    continue  # bootstrapped again meanwhile: serve the new credential, keep access
                self.revoke_access(str(exc))
                self.terminals.end_all("This container is no longer the Space's.", "revoked")
                await self._idle("this container's registration is no longer valid; bootstrap again")
        await self.terminals.aclose()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        log("stopped")
        return 0

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run `coro` in the background; its end is collected, and an error logged in one line."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)

        def collect(done: asyncio.Task[None]) -> None:
            self.tasks.discard(done)
            if not done.cancelled() and (error := done.exception()) is not None:
                log(f"{what} failed: {type(error).__name__}: {error}")

        task.add_done_callback(collect)

    async def _wait_stop(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    async def _idle(self, why: str) -> None:
        log(f"waiting: {why}")
        while not await self._wait_stop(IDLE_POLL):
            if self._registration_changed():
                return

    async def _serve(self, reg: Registration, instance_id: str) -> None:
        """Keep the control channel for one registration until it dies, changes, or we stop."""
        log(f'serving the Space "{reg.space_name}" ({reg.space_id}) on {reg.url}')
        self.sshd_port = self.ssh.port = self.home.ssh_port()  # install.sh may have run again meanwhile
        failures = 0
        restarting_until = 0.0  # while the broker said it is restarting, retry every second
        while not self.stop.is_set():
            try:
                async with dial_broker(reg, ep.AGENT_CONNECT, control=True) as ws:
                    log("connected" if not failures else "connected to the broker again")
                    failures = 0
                    if await self._channel(ws, reg, instance_id):
                        return  # bootstrapped again: start over with the new credential
            except InvalidStatus as exc:
                if exc.response.status_code in (401, 403, 409, 410):
                    status = exc.response.status_code
                    raise CredentialDead(f"the broker refused this credential (HTTP {status})") from exc
                failures += 1
                await self._backoff(failures, f"the broker answered HTTP {exc.response.status_code}.")
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code in CREDENTIAL_ENDED:
                    raise CredentialDead(exc.rcvd.reason or "the broker closed the channel") from exc
                if exc.rcvd is not None and exc.rcvd.code in BROKER_RESTARTING:
                    restarting_until = time.monotonic() + RESTART_PATIENCE
                failures += 1
                await self._backoff(failures, f"the broker closed the channel ({streams.close_of(exc)}).")
            except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
                failures += 1
                quick = time.monotonic() < restarting_until
                refused = tls.refusal(exc, reg.url)  # the operator can fix the trust store: keep trying
                why = f"{refused.message} {refused.hint}" if refused else None
                await self._backoff(
                    1 if quick else failures, why or f"cannot reach the broker at {reg.url} ({type(exc).__name__})."
                )
            if self._registration_changed():
                return

    async def _backoff(self, failures: int, why: str) -> None:
        """Wait before reconnecting: under a second the first time (a broker restart closes every
        channel with 1012, and people are waiting), then doubling up to a minute, jittered so
        that many agents do not come back in step."""
        delay = min(FIRST_BACKOFF * 2 ** min(failures - 1, 6), MAX_BACKOFF) * random.uniform(0.5, 1.0)  # noqa: S311
        log(f"{why} Retrying in {delay:.1f} s.")
        await self._wait_stop(delay)

    async def _channel(self, ws: ClientConnection, reg: Registration, instance_id: str) -> bool:
        """Heartbeat and handle pushes until the channel ends; True if the registration changed."""

        introduced = False

        async def beat(state: ReportedState | None = None) -> None:
            nonlocal introduced
            heartbeat = Heartbeat(
                instance_id=instance_id,
                state=state or ("stopped" if self.wanted == "stopped" else "running"),
                keys_version=self.keys_version,
                facts=self.facts,
                ssh=self.ssh.health,
                streams=None if introduced else list(STREAM_TARGETS),  # said once per channel
                listening=self.listening,
                terminals=self.terminals.list(),
                roles=self.terminals.take_role_changes() or None,
            )
            introduced = True
            await ws.send(msgspec.json.encode(HeartbeatMessage(heartbeat=heartbeat)).decode())

        async def heartbeats() -> bool:
            """One every interval, and one at once whenever there is news (sshd's health changed)."""
            while True:
                self._news.clear()
                await beat()
                news = asyncio.create_task(self._news.wait())
                stop = asyncio.create_task(self.stop.wait())
                await asyncio.wait((news, stop), timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (news, stop):
                    waiter.cancel()
                if self.stop.is_set():
                    return False
                if self._registration_changed():
                    return True

        async def receive() -> bool:
            async for raw in ws:
                try:
                    message = _broker_messages.decode(raw)
                except msgspec.ValidationError as exc:  # from a newer broker: not ours to act on
                    log(f"ignored a message this agent does not understand ({exc})")
                    continue
                if isinstance(message, ReplyMessage):
                    await self._apply(reg, message.reply)
                elif isinstance(message, StreamRequest):
                    name = f"stream {message.stream_id}"
                    self._spawn(self._stream(reg, message.stream_id, message.target, ep.AGENT_STREAM), name)
                elif isinstance(message, EndTerminals):
                    self._end_terminals(message)
                else:  # a broker that predates streams: a tunnel is a stream to sshd
                    name = f"tunnel {message.tunnel_id}"
                    self._spawn(self._stream(reg, message.tunnel_id, SshTarget(), ep.AGENT_TUNNEL), name)
            return False

        async def watch() -> bool:
            """Ask supervisord about sshd every second; probe when that, or a tunnel, says so."""
            while True:
                await self._check_ssh(force=self._recheck.is_set())
                if time.monotonic() - self._ports_read >= PORTS_INTERVAL:
                    await self._check_ports()
                self._recheck.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recheck.wait(), WATCH_INTERVAL)

        await self._check_ssh(force=True)  # the first heartbeat carries the truth
        await self._check_ports()
        self._control = ws
        tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(receive()), asyncio.create_task(watch())]
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._control = None
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
        if self.stop.is_set():
            with contextlib.suppress(ConnectionClosed, OSError):
                await beat("stopping")  # the Space shows `stopped` now, not after the grace period
            return False
        for task in done:
            error = task.exception()
            if error is not None:
                raise error  # ConnectionClosed and the like: _serve decides between backoff and giving up
        return any(task.result() for task in done)

    async def _check_ssh(self, *, force: bool = False) -> None:
        before = self.ssh.health
        health = await self.ssh.check(force=force)
        if health == before:
            return
        if health.serving:
            log(f"sshd is serving SSH on port {self.sshd_port}")
        elif before is None or before.serving or health.reason != before.reason:
            log(f"SSH is not being served: {health.reason}")
        self._news.set()

    async def _check_ports(self) -> None:
        """Read which ports listen (/proc/net/tcp{,6}); the broker hears at once when that changed."""
        self._ports_read = time.monotonic()
        now = await asyncio.to_thread(listening.listening, {self.sshd_port})
        if now != self.listening:
            self.listening = now
            self._news.set()

    async def _apply(self, reg: Registration, reply: HeartbeatReply) -> None:
        """Take in a reply: new keys, and start or stop sshd as the owner wants."""
        idle = reply.terminal_idle_seconds
        if idle is not None and idle != self.terminals.limits.idle_seconds:
            self.terminals.limits = dataclasses.replace(self.terminals.limits, idle_seconds=idle)
        if reply.interval_seconds != self.interval:
            self.interval = reply.interval_seconds
            self._news.set()  # the heartbeat now due may be sooner than the one being waited for
        self.write_snapshot(reg, reply.authorized_keys, reply.snapshot_max_age)
        want = "running" if reply.desired_state == "running" else "stopped"
        changed, self.wanted = want != self.wanted, want
        if want == "stopped":
            if changed:
                self.terminals.end_all("The owner stopped the Space.", "revoked")
            if changed and await self._sshd("stop"):
                log("sshd stopped, as the owner asked")
                self._news.set()  # report `stopped` at once
                self._recheck.set()
            return
        # Start sshd when the owner asks (`up`, or the first word after the agent started), not at
        # every reply: supervisord retries a failing sshd itself, and its log says why it fails.
        if not (changed or reply.start_ssh):
            return
        await self._check_ssh()  # as supervisord sees it now, not as of the last look
        health = self.ssh.health
        if health is not None and not health.serving and health.supervisor_state in {"STOPPED", *FAILED}:
            # A program in BACKOFF counts as started for supervisord (it waits to retry): restart it.
            verb = "restart" if health.supervisor_state == "BACKOFF" else "start"
            self.ssh.starting()
            self._news.set()
            self._spawn(self._start_sshd(verb), "starting sshd")

    async def _sshd(self, verb: str) -> bool:
        done = await asyncio.to_thread(supervisor.ctl, verb, "sshd")
        if done is None or done.returncode not in (0, 1):
            output = (done.stdout + done.stderr).strip() if done else "supervisorctl is not installed"
            log(f"could not {verb} sshd through supervisord: {output}")
            return False
        return True

    async def _start_sshd(self, verb: str) -> None:
        try:
            if await self._sshd(verb):
                log("sshd started, as the owner asked")
        finally:
            self.ssh.started()
            self._recheck.set()

    # -- streams ----------------------------------------------------------------------------

    def _end_terminals(self, message: EndTerminals) -> None:
        """The broker ended people's access (unshare, kick), or everyone's (down, delete)."""
        if message.emails is None:
            self.terminals.end_all(message.reason, "revoked")
        for email in message.emails or ():
            self.terminals.revoke(email, message.reason, kicked=message.kicked)

    async def _refuse(self, stream_id: str, refused: streams.Refused) -> None:
        """Tell the broker why a stream it asked for will not open, so the person hears it now."""
        control = self._control
        if control is None:
            return  # the channel is gone; the person's wait ends with the broker's timeout
        message = StreamRefused(stream_id=stream_id, message=refused.message[:300], code=refused.code)
        with contextlib.suppress(ConnectionClosed):
            await control.send(msgspec.json.encode(message).decode())

    async def _stream(self, reg: Registration, stream_id: str, target: StreamTarget, path: str) -> None:
        """Open the stream `stream_id` to `target` (through the allow-list) and connect it to the
        broker at `path`. Ends with one log line saying which side closed it, and why. A refusal
        is told to the broker on the control channel, except for `tunnel`s (from brokers that
        do not know the message): then the health report says why sshd could not be reached."""
        url_path = path.format(stream_id=stream_id, tunnel_id=stream_id)
        what = f"{'tunnel' if path == ep.AGENT_TUNNEL else 'stream'} {stream_id}"
        if isinstance(target, PtyTarget):
            ended = await self._terminal_stream(reg, url_path, target)
            log(f"{what} ended: {ended}")
            return
        ssh = not isinstance(target, TcpTarget)
        if isinstance(target, TcpTarget):  # the allow-list: pair.container.streams.tcp_refusal
            name, port, described = f"port {target.port}", target.port, f"port {target.port}"
            refusal = streams.tcp_refusal(port, shared=target.shared, reserved={self.sshd_port})
        else:
            name, port, described, refusal = "sshd", self.sshd_port, f"sshd on port {self.sshd_port}", None
        try:
            if refusal is not None:
                raise streams.Refused(refusal, "not_allowed")
            reader, writer = await streams.dial(port, described)
        except streams.Refused as refused:
            log(f"{what}: {refused.message}")
            if ssh:
                self._recheck.set()  # the broker hears why at once in the health report, and tells the person
            if path == ep.AGENT_STREAM:
                await self._refuse(stream_id, refused)
            return
        try:
            async with dial_broker(reg, url_path) as ws:
                ended = await streams.copy(reader, writer, ws, name)
        except (OSError, TimeoutError, WebSocketException) as exc:
            ended = streams.error(exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        log(f"{what} ended: {ended}")

    async def _terminal_stream(self, reg: Registration, url_path: str, target: PtyTarget) -> str:
        """Attach the broker's stream to a terminal; a terminal that cannot be had is answered
        on the stream itself with `closed {reason, code}` (pair.api.terminal's protocol)."""
        try:
            async with dial_broker(reg, url_path) as ws:
                try:
                    attachment = await self.terminals.connect(target.terminal)
                except TerminalError as exc:
                    await ws.send(tp.encode(tp.Closed(reason=exc.message, code=exc.code)))
                    return f"refused: {exc.message}"
                await pump(attachment, ws)
                rcvd = ws.protocol.close_rcvd
                if rcvd is not None and rcvd.code != CloseCode.NORMAL:
                    return f"the broker closed it ({streams.closed(rcvd.code, rcvd.reason)})"
                return "the terminal stream ended"
        except (OSError, TimeoutError, WebSocketException) as exc:
            return streams.error(exc)


def main() -> int:
    os.umask(0o077)
    home = Home()
    home.check_usable()  # a missing or unwritable PAIR_HOME is one clear error, not a traceback
    return asyncio.run(Agent(home).run())


if __name__ == "__main__":
    sys.exit(main())
