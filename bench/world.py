"""What the benchmarks share: a scratch directory, the seeded data dir, one real `pair-broker serve`
on 127.0.0.1 (as tests/support/broker.py starts it), alice's logged-in CLI, helper processes.

Everything is started lazily and registered on one ExitStack, so every server stops when the
suite ends, however it ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bench.harness import VENV_BIN, Progress
from bench.seed import ALICE, Seeded, seed
from tests.support.broker import RealBroker, real_broker
from tests.support.processes import Output, clean_env, executable, stop

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

BENCH = Path(__file__).resolve().parent


class World:
    def __init__(self, tmp: Path, stack: ExitStack, progress: Progress, *, quick: bool = False) -> None:
        self.tmp = tmp
        self.stack = stack
        self.progress = progress
        self.quick = quick
        self._seeded: Seeded | None = None
        self._broker: RealBroker | None = None
        self._alice_env: dict[str, str] | None = None
        self._postgres: PostgresServer | None = None

    @property
    def seeded(self) -> Seeded:
        if self._seeded is None:
            self.progress.note("seeding 1,000 users and 10,000 Spaces into a data dir")
            self._seeded = seed(self.tmp / "broker")
            took = self._seeded.seconds
            self.progress.say(f"  seeded 1,000 users, 10,000 Spaces, 1,000 agent credentials in {took:.1f} s")
        return self._seeded

    @property
    def broker(self) -> RealBroker:
        if self._broker is None:
            data_dir = self.seeded.data_dir
            self.progress.note("starting pair-broker serve")
            # with an apps domain, for the shared ports' benchmark (*.localhost needs no DNS)
            self._broker = self.stack.enter_context(
                real_broker(data_dir, env={"PAIR_BROKER_APPS_DOMAIN": "*.localhost"})
            )
        return self._broker

    @property
    def postgres(self) -> PostgresServer:
        """A PostgreSQL server of the suite's own (tests/support/postgres.py: Debian's initdb and
        pg_ctl, its own directory, a free port on 127.0.0.1; fsync on, commits answered before
        their WAL is flushed, like the SQLite store's `synchronous=NORMAL`)."""
        if self._postgres is None:
            from tests.support.postgres import postgres_server  # psycopg: only for the benchmarks that need it

            self.progress.note("starting PostgreSQL")
            self._postgres = self.stack.enter_context(postgres_server(durable=True))
        return self._postgres

    @property
    def url(self) -> str:
        return self.broker.url

    def broker_pid(self) -> int:
        return self.broker.proc.pid

    @property
    def alice_env(self) -> dict[str, str]:
        """An environment in which `pair` is alice, logged in to the broker (through `pair login`)."""
        if self._alice_env is None:
            env = clean_env(PAIR_CONFIG_DIR=str(self.tmp / "alice-config"))
            subprocess.run(
                [executable("pair"), "login", ALICE, "--key-file", str(self.seeded.alice_key_file), "--url", self.url],
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )
            self._alice_env = env
        return self._alice_env

    def login(self, email: str, name: str) -> dict[str, str]:
        """`pair login` for a seeded user, in its own PAIR_CONFIG_DIR."""
        key_file = self.tmp / f"{name}.key"
        key_file.write_text(self.seeded.users[email] + "\n")
        key_file.chmod(0o600)
        env = clean_env(PAIR_CONFIG_DIR=str(self.tmp / f"{name}-config"))
        subprocess.run(
            [executable("pair"), "login", email, "--key-file", str(key_file), "--url", self.url],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return env

    def helper(
        self, module: str, *args: str, ready: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[str], Output, re.Match[str]]:
        """Start `python -m bench.MODULE ARGS` (stopped with the suite); wait for a line matching `ready`."""
        proc = subprocess.Popen(
            [sys.executable, "-m", f"bench.{module}", *args],
            cwd=BENCH.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or clean_env(),
        )
        output = Output(proc)
        self.stack.callback(_stop_quietly, proc, output)
        return proc, output, output.wait_for(ready, timeout=60)


def _stop_quietly(proc: subprocess.Popen[str], output: Output) -> None:
    with contextlib.suppress(Exception):
        stop(proc)
    output.finish(2)
    if proc.stdout:
        proc.stdout.close()


# -- /proc sampling -----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (its threads included), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def cpu_window(pid: int) -> Iterator[list[float]]:
    """Yields a list that receives the process's mean CPU use (cores) over the block."""
    out: list[float] = []
    c0, t0 = cpu_seconds(pid), time.monotonic()
    yield out
    out.append((cpu_seconds(pid) - c0) / (time.monotonic() - t0))


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of a process and its children now (PostgreSQL's postmaster and its backends)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def settle(pid: int, timeout: float = 15.0) -> float:
    """Wait until a server has worked off what the last load left queued (CPU < 5% for 0.2 s), so
    one measurement does not pay for the previous one. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with cpu_window(pid) as out:
            time.sleep(0.2)
        if out[0] < 0.05:
            break
    return time.monotonic() - start


def venv(name: str) -> str:
    return str(VENV_BIN / name)
