"""`pair agent`: the long-running side of a Space, run by supervisord.

It holds one WebSocket to the broker (the control channel), authenticated by the agent
credential. Heartbeats with the container's facts ride on it (so the Space shows `running`), and
the broker pushes over it: new authorized keys (a revocation reaches the snapshot in about a
second), the desired state (`down` stops sshd through supervisorctl, `up` starts it), and tunnel
requests (dial the local sshd, connect it to the broker). Each heartbeat says whether sshd is
really serving and why not (`pair.container.health`); a change is reported at once. When the
broker is away it reconnects with backoff and jitter (the first retry within a second, so a
restarted broker has its agents back at once); the snapshot carries its own age limit, so `pair
verify` stops trusting it on time whatever happens here. When the credential dies (Space deleted, or re-bootstrapped
elsewhere) it removes the snapshot, so nobody gets in, and waits for a new bootstrap. SIGTERM ends
it cleanly, telling the broker the Space is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from websockets.frames import Close

from pair import verify
from pair.api import endpoints as ep
from pair.api.models import (
    AuthorizedKeys,
    BrokerMessage,
    Heartbeat,
    HeartbeatMessage,
    HeartbeatReply,
    ReplyMessage,
)
from pair.container import facts, supervisor
from pair.container.health import FAILED, SshWatch, os_error
from pair.container.home import Home, Registration
from pair.files import write_private

FIRST_BACKOFF = 1.0  # seconds before the first retry (jittered down to half); doubles per failure
MAX_BACKOFF = 60.0
IDLE_POLL = 1.0  # how often to look for a (new) registration while there is none that works
WATCH_INTERVAL = 1.0  # how often supervisord is asked about sshd (one XML-RPC call, no process)
DEAD = {4401, 4409}  # close codes: this credential or this container is no longer the Space's
RESTARTING = {1001, 1012}  # close codes (going away, service restart): the broker will be back
RESTART_PATIENCE = 30.0  # seconds of retrying every second after that, before backing off
CHUNK = 64 * 1024


def log(message: str) -> None:
    print(f"pair agent: {message}", flush=True)


def ws_url(base: str, path: str) -> str:
    scheme, rest = base.split("://", 1)
    return ("wss://" if scheme == "https" else "ws://") + rest.rstrip("/") + path


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
        self.tasks: set[asyncio.Task[None]] = set()  # tunnels and sshd starts, each collected when done
        self._news = asyncio.Event()  # set when the broker should hear a heartbeat now
        self._recheck = asyncio.Event()  # set when sshd's health must be probed now (a tunnel failed)
        self._registration_stamp: float | None = None

    # -- snapshot ---------------------------------------------------------------------------

    def write_snapshot(self, reg: Registration, keys: AuthorizedKeys | None, max_age: int) -> None:
        """Replace the snapshot (atomically, 0600), stamped now so `pair verify` can age it."""
        if keys is not None:
            if keys.version != self.keys_version:
                log(f"authorized keys now: {', '.join(sorted({k.email for k in keys.keys})) or 'nobody'}")
            self.keys_version = keys.version
            self.snapshot_keys = [(k.key, k.email, k.role) for k in keys.keys]
            self.login_user = keys.login_user
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
                await self._idle("this container's registration is no longer valid; bootstrap again")
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
        headers = {"Authorization": f"Bearer {reg.credential}"}
        while not self.stop.is_set():
            try:
                async with connect(
                    ws_url(reg.url, ep.AGENT_CONNECT),
                    additional_headers=headers,
                    compression=None,
                    open_timeout=10,
                    ping_interval=20,
                    ping_timeout=20,
                ) as ws:
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
                if exc.rcvd is not None and exc.rcvd.code in DEAD:
                    raise CredentialDead(exc.rcvd.reason or "the broker closed the channel") from exc
                if exc.rcvd is not None and exc.rcvd.code in RESTARTING:
                    restarting_until = time.monotonic() + RESTART_PATIENCE
                failures += 1
                await self._backoff(failures, f"the broker closed the channel ({_closed(exc)}).")
            except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
                failures += 1
                quick = time.monotonic() < restarting_until
                await self._backoff(
                    1 if quick else failures, f"cannot reach the broker at {reg.url} ({type(exc).__name__})."
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

        async def beat(state: str | None = None) -> None:
            heartbeat = Heartbeat(
                instance_id=instance_id,
                state=state or ("stopped" if self.wanted == "stopped" else "running"),  # type: ignore[arg-type]
                keys_version=self.keys_version,
                facts=self.facts,
                ssh=self.ssh.health,
            )
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
                message = msgspec.json.decode(raw, type=BrokerMessage)
                if isinstance(message, ReplyMessage):
                    await self._apply(reg, message.reply)
                else:
                    self._spawn(self._tunnel(reg, message.tunnel_id), f"tunnel {message.tunnel_id}")
            return False

        async def watch() -> bool:
            """Ask supervisord about sshd every second; probe when that, or a tunnel, says so."""
            while True:
                await self._check_ssh(force=self._recheck.is_set())
                self._recheck.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recheck.wait(), WATCH_INTERVAL)

        await self._check_ssh(force=True)  # the first heartbeat carries the truth
        tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(receive()), asyncio.create_task(watch())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
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

    async def _apply(self, reg: Registration, reply: HeartbeatReply) -> None:
        """Take in a reply: new keys, and start or stop sshd as the owner wants."""
        if reply.interval_seconds != self.interval:
            self.interval = reply.interval_seconds
            self._news.set()  # the heartbeat now due may be sooner than the one being waited for
        self.write_snapshot(reg, reply.authorized_keys, reply.snapshot_max_age)
        want = "running" if reply.desired_state == "running" else "stopped"
        changed, self.wanted = want != self.wanted, want
        if want == "stopped":
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

    # -- tunnels ----------------------------------------------------------------------------

    async def _tunnel(self, reg: Registration, tunnel_id: str) -> None:
        """Dial the local sshd and the broker's end of the tunnel, and copy bytes both ways.
        Ends with one log line saying which side closed it, and why."""
        url = ws_url(reg.url, ep.AGENT_TUNNEL.format(tunnel_id=tunnel_id))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.sshd_port)
        except OSError as exc:
            log(f"tunnel {tunnel_id}: sshd on port {self.sshd_port} is not reachable ({os_error(exc)})")
            self._recheck.set()  # the broker hears why at once, and tells the person
            return
        ended = "closed"
        try:
            async with connect(
                url,
                additional_headers={"Authorization": f"Bearer {reg.credential}"},
                compression=None,
                max_size=None,
                open_timeout=10,
                ping_interval=None,  # ssh keeps the connection alive itself
            ) as ws:

                async def to_broker() -> str:
                    while data := await reader.read(CHUNK):
                        await ws.send(data)
                    return "sshd closed the connection"

                async def to_sshd() -> str:
                    async for data in ws:
                        writer.write(data if isinstance(data, bytes) else data.encode())
                        await writer.drain()
                    return "the person's side closed"

                tasks = [asyncio.create_task(to_broker()), asyncio.create_task(to_sshd())]
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)  # every error collected
                first = next(iter(done))
                outcome = results[tasks.index(first)]
                rcvd = ws.protocol.close_rcvd
                if rcvd is not None and rcvd.code != 1000:
                    ended = f"the broker closed it ({_closed(rcvd)})"
                elif isinstance(outcome, str):
                    ended = outcome
                elif isinstance(outcome, BaseException):
                    ended = _error(outcome)
        except (OSError, TimeoutError, WebSocketException) as exc:
            ended = _error(exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        log(f"tunnel {tunnel_id} ended: {ended}")


def _closed(exc: ConnectionClosed | Close) -> str:
    """`code reason` of a WebSocket close, e.g. `1012 The broker is restarting.`"""
    frame = exc if isinstance(exc, Close) else exc.rcvd
    if frame is None:
        return "no close frame: the connection dropped"
    return f"{frame.code} {frame.reason}".strip()


def _error(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return f"the broker closed it ({_closed(exc)})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def main() -> int:
    os.umask(0o077)
    home = Home()
    home.check_usable()  # a missing or unwritable PAIR_HOME is one clear error, not a traceback
    return asyncio.run(Agent(home).run())


if __name__ == "__main__":
    sys.exit(main())
