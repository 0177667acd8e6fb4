"""A real, throwaway Debian for install.sh, without a container engine.

`base_root()` builds a minimal Debian 12 root with debootstrap once (~30-50 s) and caches it
outside the repository (/var/cache/pair-tests, or $PAIR_TEST_CACHE), keyed by BASE_VERSION. Each
`Chroot` lays an overlay over that cache in a private mount namespace held open by a small
holder process, so every test starts from the same clean root and all its writes land in its own
upper directory (which is also how a test proves a run changed nothing). Commands run inside with
`nsenter` + `chroot`; the network namespace is the host's, so 127.0.0.1 reaches a broker on the host.
When the holder exits, the namespace and every mount in it go away with it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support.container import eventually
from tests.support.processes import Output
from tests.support.tools import need_tool

BASE_VERSION = "bookworm-minbase-1"  # bump to rebuild every machine's cached root
SUITE = "bookworm"
CACHE = Path(os.environ.get("PAIR_TEST_CACHE") or "/var/cache/pair-tests")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_ROOT = "/etc/pair-test-ca.pem"  # this machine's CA bundle, for pip behind a TLS-inspecting egress
POLICY_RC_D = "#!/bin/sh\n# Nothing starts services in a chroot.\nexit 101\n"
# What a container engine writes into every container (debootstrap writes no /etc/hosts): without
# it `localhost` resolves nowhere, and a broker at https://localhost:PORT (a certificate for
# localhost) is out of reach from the root.
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
APT_ARCHIVES = "/var/cache/apt/archives"  # bound to one host folder shared by every root (debian())
# Every root's apt-get runs holding a flock on the shared archives folder itself (a file in it
# would go with `apt-get clean`): apt's own lock there (archives/lock) is taken without waiting, so
# a second root's apt-get would fail while the first downloads. /usr/local/sbin comes first on
# PATH; flock is util-linux's (Essential in Debian).
APT_GET = (
    f"#!/bin/sh\n# One root at a time in the shared {APT_ARCHIVES} (tests/install/debian.py).\n"
    f'exec /usr/bin/flock {APT_ARCHIVES} /usr/bin/apt-get "$@"\n'
)


def apt_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's own apt uses for bookworm (deb822 or one-line sources)."""
    files = sorted((sources / "sources.list.d").glob("*.sources")) + sorted((sources / "sources.list.d").glob("*.list"))
    files.append(sources / "sources.list")
    for file in files:
        try:
            text = file.read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.MULTILINE))
            if SUITE in fields.get("Suites", "").split() and "deb" in fields.get("Types", "deb").split():
                for uri in fields.get("URIs", "").split():
                    if uri.startswith(("http://", "https://")) and "security" not in uri:
                        return uri.rstrip("/")
        for line in text.splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(https?://\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE:
                return str(m.group(1)).rstrip("/")
    return "http://deb.debian.org/debian"


def base_root() -> Path:
    """The cached debootstrapped root, built on first use (one builder at a time)."""
    target = CACHE / BASE_VERSION
    if target.is_dir():
        return target
    debootstrap = need_tool("debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{BASE_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():  # another test run built it while we waited
            return target
        building = CACHE / f"{BASE_VERSION}.building"
        shutil.rmtree(building, ignore_errors=True)
        result = subprocess.run(
            [debootstrap, "--variant=minbase", SUITE, str(building), apt_mirror()],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert result.returncode == 0, f"debootstrap failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        building.rename(target)  # whole or not at all: an interrupted build is never used
    return target


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    target: str


def tree(top: Path) -> dict[str, Entry]:
    """Every path under `top` with what a change would alter (content shows as size and mtime)."""
    found: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            target = os.readlink(path) if kind == "link" else ""
            found[str(path.relative_to(top))] = Entry(
                kind, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, target
            )
    return found


def diff(before: dict[str, Entry], after: dict[str, Entry]) -> list[str]:
    return sorted(
        [f"+ {p}" for p in after.keys() - before.keys()]
        + [f"- {p}" for p in before.keys() - after.keys()]
        + [f"~ {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )


class Chroot:
    """A clean Debian root (overlay on the cached base) in its own mount namespace."""

    def __init__(self, base: Path, work: Path) -> None:
        self.base = base
        self.upper, self.workdir, self.root = work / "upper", work / "work", work / "root"
        for d in (self.upper, self.workdir, self.root):
            d.mkdir(parents=True)
        self.holder: subprocess.Popen[str] | None = None
        self.namespace = ""  # the mount namespace (`mnt:[INODE]`), read once it is made
        self.output: Output | None = None

    # -- the namespace ------------------------------------------------------------------------

    def start(self, binds: dict[str, Path] | None = None) -> None:
        """Mount the overlay, /proc, /dev and /sys (and `binds`: path in root -> host dir); wait until ready."""
        self._seed()
        mounts = [
            f"mount -t overlay overlay {self.root}"
            f" -o lowerdir={self.base},upperdir={self.upper},workdir={self.workdir}",
            f"mount -t proc proc {self.root}/proc",
            f"mount --rbind /dev {self.root}/dev",
            f"mount --rbind /sys {self.root}/sys",
        ]
        for inside, outside in (binds or {}).items():
            outside.mkdir(parents=True, exist_ok=True)
            mounts.append(f"mkdir -p {self.root}{inside} && mount --bind {outside} {self.root}{inside}")
        # The holder keeps the namespace alive until its stdin closes (or the test process dies).
        # It runs in a session of its own: a terminal's Ctrl-C (SIGINT to the whole foreground
        # process group) reaches scripts/local-container.sh, which cleans up, and not the holder,
        # which would leave the namespace to supervisord and sshd with nothing to find them by.
        script = "set -e\n" + "\n".join(mounts) + "\necho ready\nexec cat >/dev/null\n"
        self.holder = subprocess.Popen(
            [need_tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = Output(self.holder)
        self.output.wait_for(r"^ready$")
        self.namespace = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")

    def _seed(self) -> None:
        """Files every test needs, written into the upper layer before it is mounted."""
        for rel, text, mode in (
            ("usr/sbin/policy-rc.d", POLICY_RC_D, 0o755),
            ("usr/local/sbin/apt-get", APT_GET, 0o755),
            ("etc/resolv.conf", Path("/etc/resolv.conf").read_text(), 0o644),
            ("etc/hosts", HOSTS, 0o644),
            (CA_IN_ROOT.lstrip("/"), HOST_CA.read_text() if HOST_CA.exists() else "", 0o644),
        ):
            path = self.upper / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)

    def path(self, inside: str) -> Path:
        """A path inside the root, reachable from the host through the holder's view of its mounts."""
        assert self.holder is not None
        return Path(f"/proc/{self.holder.pid}/root{self.root}") / inside.lstrip("/")

    def changes(self) -> dict[str, Entry]:
        """Everything the tests and the programs in the root changed, relative to the clean base."""
        return tree(self.upper)

    def run(
        self,
        *command: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the root as root, with a container-like environment (nothing from ours)."""
        assert self.holder is not None
        environment = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "PIP_CERT": CA_IN_ROOT, **(env or {})}
        return subprocess.run(
            [need_tool("nsenter"), "-t", str(self.holder.pid), "-m", "--", "chroot", str(self.root), *command],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            check=False,
        )

    def ok(self, *command: str, **kwargs: object) -> str:
        result = self.run(*command, **kwargs)  # type: ignore[arg-type]
        assert result.returncode == 0, (
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def processes(self) -> list[int]:
        """Processes in this mount namespace other than the holder (what the tests started in it),
        found by the namespace itself, so also after the holder ended."""
        assert self.holder is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == self.holder.pid:
                continue
            try:
                if os.readlink(entry / "ns" / "mnt") == self.namespace:
                    found.append(int(entry.name))
            except OSError:
                continue  # gone, or not ours to read
        return found

    def stop(self) -> None:
        """End what still runs inside (by pid: only processes of this namespace), then the holder."""
        if self.holder is None:
            return

        def ended() -> bool:  # killed again each round: a supervisord may have started one meanwhile
            running = self.processes()
            for pid in running:
                with suppress(ProcessLookupError):
                    os.kill(pid, 9)
            return not running

        eventually(ended, "every process in the chroot's namespace ended")
        assert self.holder.stdin is not None
        self.holder.stdin.close()
        self.holder.wait(timeout=20)
        if self.output is not None:
            self.output.finish()
        assert self.holder.stdout is not None
        self.holder.stdout.close()
        self.holder = None


@contextmanager
def debian(work: Path, apt_archives: Path = CACHE / "apt-archives") -> Iterator[Chroot]:
    """A fresh Debian 12 root for one test, with persistent pip and apt download caches (shared
    by every root at once: their apt-get runs take turns, see APT_GET)."""
    chroot = Chroot(base_root(), work)
    (apt_archives / "partial").mkdir(parents=True, exist_ok=True)
    try:
        chroot.start(binds={"/root/.cache/pip": CACHE / "pip-cache", APT_ARCHIVES: apt_archives})
        yield chroot
    finally:
        chroot.stop()
        shutil.rmtree(work, ignore_errors=True)
