"""A Space's container side, for real, without a container engine.

A private mount namespace stands in for the container: inside it a tmpfs covers /mnt and the
test's PAIR_HOME is bind-mounted at /mnt/pair, a root-owned path, because sshd refuses an
AuthorizedKeysCommand anywhere under /tmp (every directory on its path must be root-owned and
not group- or world-writable). supervisord runs in that namespace with the configs
`pair.container.configs` renders for install.sh, and starts the real sshd and the real
`pair agent` through the real launcher.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pair import verify
from pair.container import configs, launcher
from tests.support.people import ssh_direct
from tests.support.processes import Output, clean_env, executable, stop
from tests.support.tools import need_tool

MOUNT = "/mnt/pair"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eventually(check: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    """Poll `check` until it returns something truthy: for state that has no event to wait on
    (a file another process rewrites, a row the broker updates)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


@dataclass
class Container:
    home: Path  # PAIR_HOME as seen from outside; /mnt/pair inside
    ssh_port: int
    supervisor_conf: Path
    host_public_key: str
    supervisord: subprocess.Popen[str]
    output: Output

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(PAIR_HOME=str(self.home), PAIR_SUPERVISOR_CONF=str(self.supervisor_conf), **extra)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(self.supervisor_conf), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def log(self, name: str) -> str:
        path = self.home / "log" / name
        return path.read_text() if path.exists() else ""

    def snapshot_emails(self) -> set[str] | None:
        try:
            return {email for _, email, _ in verify.entries((self.home / "authorized_keys").read_text())}
        except (OSError, ValueError):
            return None

    def ssh(self, key: Path, *command: str, user: str = "root") -> subprocess.CompletedProcess[str]:
        return ssh_direct(
            key, self.ssh_port, self.host_public_key, self.home.parent / "known_hosts", *command, user=user
        )


@contextmanager
def container(home: Path) -> Iterator[Container]:
    """Start the namespace with supervisord, sshd and pair-agent; stop it all afterwards."""
    need_tool("unshare")
    sshd = need_tool("sshd")
    keygen = need_tool("ssh-keygen")
    home.mkdir(mode=0o755, parents=True, exist_ok=True)
    home.chmod(0o755)
    for sub in ("sshd", "log", "run", "conf.d"):
        (home / sub).mkdir(exist_ok=True)
    launcher.write(home / "pair", Path(MOUNT))
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(home / "sshd" / "ssh_host_ed25519_key")], check=True
    )
    port = free_port()
    (home / "sshd_config").write_text(configs.sshd_config(MOUNT, port))
    (home / "ssh-port").write_text(f"{port}\n")  # as install.sh --ssh-port does: the agent dials it
    conf = home / "supervisord.conf"
    conf.write_text(configs.supervisord_conf(f"{MOUNT}/conf.d", run_dir=str(home / "run"), log_dir=f"{MOUNT}/log"))
    (home / "conf.d" / "pair.conf").write_text(
        configs.programs(MOUNT, f"{MOUNT}/sshd_config", sshd=sshd, log_dir=f"{MOUNT}/log")
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    script = (
        f"mount -t tmpfs -o mode=755 tmpfs /mnt && mkdir {MOUNT} && mount --bind {home} {MOUNT} "
        f"&& exec {Path(sys.executable).parent / 'supervisord'} -n -c {conf}"
    )
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(
            PATH=f"{Path(executable('pair')).parent}:/usr/sbin:/usr/bin:/sbin:/bin", PAIR_SUPERVISOR_CONF=str(conf)
        ),
    )
    output = Output(proc)
    try:
        output.wait_for(r"success: sshd entered RUNNING state")
        host_key = (home / "sshd" / "ssh_host_ed25519_key.pub").read_text().split()
        yield Container(home, port, conf, " ".join(host_key[:2]), proc, output)
    finally:
        stop(proc, timeout=20)
        output.finish()
        assert proc.stdout is not None
        proc.stdout.close()
