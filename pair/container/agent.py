"""`pair agent`: the long-running side of a Space, run by supervisord.

It heartbeats to the broker with the container's facts (so the Space shows `running`), and keeps
the authorized-keys snapshot that `pair verify` reads current. When the broker is away it retries
with backoff and jitter; the snapshot it holds carries its own age limit, so `pair verify` stops
trusting it on time whatever the agent is doing. When its credential dies (the Space was deleted,
or re-bootstrapped in another container) it removes the snapshot, so nobody gets in, and waits
for a new bootstrap. SIGTERM ends it cleanly, telling the broker the Space is stopping.
"""

from __future__ import annotations

import json
import random
import signal
import sys
import threading
import time
from types import FrameType

from pair.api.client import Client
from pair.api.errors import ApiError, AuthError, BrokerUnreachable
from pair.api.models import AuthorizedKeys, ContainerFacts, Heartbeat, HeartbeatReply
from pair.container import facts
from pair.container.home import Home, Registration
from pair.files import write_private

MAX_BACKOFF = 60.0
IDLE_POLL = 2.0  # how often to look for a (new) registration while there is none that works


def log(message: str) -> None:
    print(f"pair agent: {message}", flush=True)


class Agent:
    def __init__(self, home: Home | None = None) -> None:
        self.home = home or Home()
        self.stop = threading.Event()
        self.facts: ContainerFacts = facts.collect(self.home.host_key_file)
        self.keys_version = ""
        self.interval = 10.0
        self._registration_stamp: float | None = None

    # -- snapshot ---------------------------------------------------------------------------

    def write_snapshot(self, reg: Registration, keys: AuthorizedKeys | None, max_age: int) -> None:
        """Replace the snapshot (atomically, 0600), stamped now so `pair verify` can age it."""
        if keys is None:
            try:
                current = json.loads(self.home.snapshot_file.read_text())
            except (OSError, ValueError):
                return  # nothing to re-stamp; the next reply carries the keys
            current.update(refreshed_at=time.time(), max_age=max_age)
            body = current
        else:
            body = {
                "space_id": reg.space_id,
                "version": keys.version,
                "login_user": keys.login_user,
                "refreshed_at": time.time(),
                "max_age": max_age,
                "keys": [
                    {"key": k.key, "fingerprint": k.fingerprint, "email": k.email, "role": k.role} for k in keys.keys
                ],
            }
            if keys.version != self.keys_version:
                log(f"authorized keys now: {', '.join(sorted({k.email for k in keys.keys})) or 'nobody'}")
            self.keys_version = keys.version
        write_private(self.home.snapshot_file, json.dumps(body, indent=1) + "\n")

    def revoke_access(self, why: str) -> None:
        if self.home.snapshot_file.exists():
            self.home.snapshot_file.unlink()
            log(f"removed the authorized-keys snapshot: {why}")
        self.keys_version = ""

    # -- loop -------------------------------------------------------------------------------

    def _registration_changed(self) -> bool:
        try:
            stamp = self.home.registration_file.stat().st_mtime
        except FileNotFoundError:
            stamp = None
        changed = stamp != self._registration_stamp
        self._registration_stamp = stamp
        return changed

    def beat(self, client: Client, instance_id: str, state: str = "running") -> HeartbeatReply:
        return client.heartbeat(
            Heartbeat(
                instance_id=instance_id,
                state=state,  # type: ignore[arg-type]
                keys_version=self.keys_version,
                facts=self.facts,
            )
        )

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        instance_id = self.home.instance_id()
        log(f"started (PAIR_HOME {self.home.root})")
        while not self.stop.is_set():
            self._registration_changed()
            reg = self.home.registration()
            if reg is None:
                self._idle("not bootstrapped yet; run `pair spaces bootstrap`")
                continue
            self._serve(reg, instance_id)
        log("stopped")
        return 0

    def _idle(self, why: str) -> None:
        log(f"waiting: {why}")
        while not self.stop.wait(IDLE_POLL):
            if self._registration_changed():
                return

    def _serve(self, reg: Registration, instance_id: str) -> None:
        """Heartbeat for one registration until it dies, changes, or the agent stops."""
        failures = 0
        log(f'serving the Space "{reg.space_name}" ({reg.space_id}) on {reg.url}')
        with Client(reg.url, token=reg.credential, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    reply = self.beat(client, instance_id)
                except (AuthError, ApiError) as exc:
                    if isinstance(exc, AuthError) or exc.status == 409:
                        self.revoke_access(exc.message)
                        self._idle("this container's registration is no longer valid; bootstrap again")
                        return
                    failures += 1
                    self._backoff(failures, exc.message)
                except BrokerUnreachable as exc:
                    failures += 1
                    self._backoff(failures, exc.message)
                else:
                    if failures:
                        log("connected to the broker again")
                    failures = 0
                    self.interval = reply.interval_seconds
                    self.write_snapshot(reg, reply.authorized_keys, reply.snapshot_max_age)
                    if self.stop.wait(self.interval):
                        break
                if self._registration_changed():
                    return  # bootstrapped again: start over with the new credential
            self._say_goodbye(client, instance_id)

    def _backoff(self, failures: int, why: str) -> None:
        delay = min(self.interval * 2 ** min(failures - 1, 6), MAX_BACKOFF) * random.uniform(0.5, 1.0)  # noqa: S311
        log(f"{why} Retrying in {delay:.1f} s.")
        self.stop.wait(delay)

    def _say_goodbye(self, client: Client, instance_id: str) -> None:
        try:
            self.beat(client, instance_id, "stopping")
        except (ApiError, BrokerUnreachable) as exc:
            log(f"could not tell the broker we are stopping: {exc.message}")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop.set()


def main() -> int:
    return Agent().run()


if __name__ == "__main__":
    sys.exit(main())
