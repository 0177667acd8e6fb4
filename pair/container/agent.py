"""`pair agent`: the long-running side of a Space, run by supervisord.

It holds one WebSocket to the broker (the control channel), authenticated by the agent
credential. Heartbeats with the container's facts ride on it (so the Space shows `running`), and
the broker pushes over it: new authorized keys (a revocation reaches the snapshot in about a
second), the desired state (`down` stops sshd through supervisorctl, `up` starts it), and tunnel
requests (dial the local sshd, connect it to the broker). When the broker is away it reconnects
with backoff and jitter; the snapshot carries its own age limit, so `pair verify` stops trusting
it on time whatever happens here. When the credential dies (Space deleted, or re-bootstrapped
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

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from pair import verify
from pair.api import endpoints as ep
from pair.api.models import AuthorizedKeys, BrokerMessage, Heartbeat, HeartbeatMessage, HeartbeatReply, ReplyMessage
from pair.container import facts, supervisor
from pair.container.home import Home, Registration
from pair.files import write_private

MAX_BACKOFF = 60.0
IDLE_POLL = 1.0  # how often to look for a (new) registration while there is none that works
DEAD = {4401, 4409}  # close codes: this credential or this container is no longer the Space's
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
        self.sshd_state = "running"
        self.tunnels: set[asyncio.Task[None]] = set()
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
        for task in list(self.tunnels):
            task.cancel()
        log("stopped")
        return 0

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
        failures = 0
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
                failures += 1
                await self._backoff(failures, "the connection to the broker closed.")
            except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
                failures += 1
                await self._backoff(failures, f"cannot reach the broker at {reg.url} ({type(exc).__name__}).")
            if self._registration_changed():
                return

    async def _backoff(self, failures: int, why: str) -> None:
        delay = min(self.interval * 2 ** min(failures - 1, 6), MAX_BACKOFF) * random.uniform(0.5, 1.0)  # noqa: S311
        log(f"{why} Retrying in {delay:.1f} s.")
        await self._wait_stop(delay)

    async def _channel(self, ws: ClientConnection, reg: Registration, instance_id: str) -> bool:
        """Heartbeat and handle pushes until the channel ends; True if the registration changed."""

        async def beat(state: str | None = None) -> None:
            heartbeat = Heartbeat(
                instance_id=instance_id,
                state=state or self.sshd_state,  # type: ignore[arg-type]
                keys_version=self.keys_version,
                facts=self.facts,
            )
            await ws.send(msgspec.json.encode(HeartbeatMessage(heartbeat=heartbeat)).decode())

        async def heartbeats() -> bool:
            while True:
                await beat()
                if await self._wait_stop(self.interval):
                    return False
                if self._registration_changed():
                    return True

        async def receive() -> bool:
            async for raw in ws:
                message = msgspec.json.decode(raw, type=BrokerMessage)
                if isinstance(message, ReplyMessage):
                    if await self._apply(reg, message.reply):
                        await beat()  # report the new sshd state at once
                else:
                    task = asyncio.create_task(self._tunnel(reg, message.tunnel_id))
                    self.tunnels.add(task)
                    task.add_done_callback(self.tunnels.discard)
            return False

        # sshd's state changes only when we change it (supervisord restarts a crashed one), so it
        # is read once per channel rather than by a supervisorctl process every heartbeat.
        self.sshd_state = await asyncio.to_thread(_sshd_state)
        tasks = [asyncio.create_task(heartbeats()), asyncio.create_task(receive())]
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

    async def _apply(self, reg: Registration, reply: HeartbeatReply) -> bool:
        """Take in a reply: new keys, and start or stop sshd as the owner wants. True if sshd changed."""
        self.interval = reply.interval_seconds
        self.write_snapshot(reg, reply.authorized_keys, reply.snapshot_max_age)
        want = "running" if reply.desired_state == "running" else "stopped"
        if want == self.sshd_state:
            return False
        done = await asyncio.to_thread(supervisor.ctl, "start" if want == "running" else "stop", "sshd")
        if done is None or done.returncode not in (0, 1):
            log(f"could not {'start' if want == 'running' else 'stop'} sshd through supervisord")
            return False
        log(f"sshd {'started' if want == 'running' else 'stopped'}, as the owner asked")
        self.sshd_state = want
        return True

    # -- tunnels ----------------------------------------------------------------------------

    async def _tunnel(self, reg: Registration, tunnel_id: str) -> None:
        """Dial the local sshd and the broker's end of the tunnel, and copy bytes both ways."""
        url = ws_url(reg.url, ep.AGENT_TUNNEL.format(tunnel_id=tunnel_id))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.sshd_port)
        except OSError as exc:
            log(f"tunnel {tunnel_id}: sshd on port {self.sshd_port} is not reachable ({exc.strerror})")
            return
        try:
            async with connect(
                url,
                additional_headers={"Authorization": f"Bearer {reg.credential}"},
                compression=None,
                max_size=None,
                open_timeout=10,
                ping_interval=None,  # ssh keeps the connection alive itself
            ) as ws:

                async def to_broker() -> None:
                    while data := await reader.read(CHUNK):
                        await ws.send(data)

                async def to_sshd() -> None:
                    async for data in ws:
                        writer.write(data if isinstance(data, bytes) else data.encode())
                        await writer.drain()

                tasks = [asyncio.create_task(to_broker()), asyncio.create_task(to_sshd())]
                _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
        except (OSError, TimeoutError, WebSocketException) as exc:
            log(f"tunnel {tunnel_id}: {type(exc).__name__}: {exc}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _sshd_state() -> str:
    status = supervisor.ctl("status", "sshd")
    if status is None or status.returncode not in (supervisor.RUNNING, supervisor.NOT_RUNNING):
        return "running"  # not under our supervisord: sshd is whatever it is; assume it serves
    return "running" if status.returncode == supervisor.RUNNING else "stopped"


def main() -> int:
    os.umask(0o077)
    return asyncio.run(Agent().run())


if __name__ == "__main__":
    sys.exit(main())
