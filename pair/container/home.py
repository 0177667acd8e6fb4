"""Files in $PAIR_HOME (default /opt/pair), the container side's one directory."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pair.api.errors import PairError
from pair.config import check_broker_url
from pair.files import read_small_bytes, write_private


def pair_home() -> Path:
    return Path(os.environ.get("PAIR_HOME") or "/opt/pair")


@dataclass
class Registration:
    """What bootstrap stores for the agent: which broker, which Space, and the credential."""

    url: str
    space_id: str
    space_name: str
    credential: str


class Home:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or pair_home()

    @property
    def bootstrap_token_file(self) -> Path:
        return self.root / "bootstrap.txt"

    @property
    def space_key_file(self) -> Path:
        return self.root / "space-key"  # install.sh --space-key (the Feature's spaceKey option), 0600

    @property
    def registration_file(self) -> Path:
        return self.root / "agent.json"

    @property
    def instance_id_file(self) -> Path:
        return self.root / "instance-id"

    @property
    def bootstrap_lock_file(self) -> Path:
        return self.root / "bootstrap.lock"

    @property
    def broker_url_file(self) -> Path:
        return self.root / "broker-url"  # install.sh --broker-url

    def broker_url_override(self) -> str:
        """PAIR_URL, else the URL install.sh was given, else "" (use the token's issuer); each
        checked by pair.config.check_broker_url (PairError)."""
        if os.environ.get("PAIR_URL"):
            return check_broker_url(os.environ["PAIR_URL"], "PAIR_URL")
        try:
            url = self.broker_url_file.read_text().strip()
        except FileNotFoundError:
            return ""
        return check_broker_url(url, str(self.broker_url_file)) if url else ""

    @property
    def ssh_port_file(self) -> Path:
        return self.root / "ssh-port"  # install.sh --ssh-port

    def ssh_port(self) -> int:
        """The port of the Space's sshd (install.sh --ssh-port writes it; 2222 otherwise)."""
        try:
            return int(self.ssh_port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return int(os.environ.get("PAIR_SSH_PORT") or 2222)

    @property
    def snapshot_file(self) -> Path:
        return self.root / "authorized_keys"  # pair.verify.SNAPSHOT

    @property
    def ssh_user_file(self) -> Path:
        return self.root / "ssh-user"  # install.sh --ssh-user

    @property
    def host_key_file(self) -> Path:
        return self.root / "sshd" / "ssh_host_ed25519_key.pub"

    def ensure(self) -> None:
        try:
            self.root.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise PairError(
                f"Cannot create {self.root}: {exc.strerror}.",
                "Run as the user that installed pair, or set PAIR_HOME to a writable directory.",
            ) from exc

    def check_usable(self) -> None:
        """Raise PairError unless the root is an existing directory this user can write: what
        `pair agent` needs before it starts (it never creates $PAIR_HOME; install.sh does)."""
        hint = (
            "Set PAIR_HOME to the directory install.sh installed pair into (default /opt/pair), "
            "and run `pair spaces bootstrap` there first."
        )
        if not self.root.exists():
            raise PairError(f"PAIR_HOME {self.root} does not exist.", hint)
        if not self.root.is_dir():
            raise PairError(f"PAIR_HOME {self.root} is not a directory.", hint)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise PairError(
                f"PAIR_HOME {self.root} is not writable by this user (uid {os.getuid()}).",
                "Run the agent as the user that installed pair (supervisord does), or fix the directory's owner.",
            )

    def instance_id(self) -> str:
        """This container's random id, created (and persisted) before anything is sent.

        The agent (at container start) and any number of bootstraps (one per attaching window)
        may ask at once: the id is written to a temporary file and published with link(2),
        which fails if another got there first, so every caller returns the one id on disk.
        """
        existing = self._read_instance_id()
        if existing:
            return existing
        value = "inst_" + secrets.token_hex(16)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".instance-id.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(value + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.instance_id_file)
            except FileExistsError:
                existing = self._read_instance_id()
                if not existing:
                    raise PairError(
                        f"{self.instance_id_file} is empty.",
                        "Delete it and bootstrap again (with a fresh token from `pair spaces authorize --space NAME`).",
                    ) from None
                return existing
        finally:
            os.unlink(tmp)
        return value

    def _read_instance_id(self) -> str:
        try:
            return self.instance_id_file.read_text().strip()
        except FileNotFoundError:
            return ""

    @contextlib.contextmanager
    def bootstrap_lock(self, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Hold the container's bootstrap lock (flock(2) on bootstrap.lock) for the block, so
        bootstraps started at once (several windows attaching) run one after the other and the
        later ones find the first one's registration. `on_wait` is called before blocking."""
        try:
            fd = os.open(self.bootstrap_lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise PairError(
                f"Cannot write in {self.root}: {exc.strerror}.",
                "Run as the user that installed pair (root in a Devcontainer), or set PAIR_HOME to a writable "
                "directory.",
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def registration(self) -> Registration | None:
        try:
            data = json.loads(self.registration_file.read_text())
            return Registration(**{k: str(data[k]) for k in ("url", "space_id", "space_name", "credential")})
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PairError(
                f"{self.registration_file} is damaged ({exc}).", "Delete it and bootstrap again with a fresh token."
            ) from exc

    def save_registration(self, reg: Registration) -> None:
        write_private(self.registration_file, json.dumps(asdict(reg), indent=2) + "\n")

    def stored_key(self) -> bytes | None:
        """space-key's bytes as they are, or None if there is none."""
        try:
            with self.space_key_file.open("rb") as f:
                return f.read(64 * 1024 + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PairError(f"Cannot read {self.space_key_file}: {exc.strerror}.") from exc

    def stored_token(self) -> bytes | None:
        """bootstrap.txt's bytes as they are (pair.api.tokens decodes them: a Windows editor
        may have saved UTF-16), or None if there is none."""
        return read_small_bytes(  # a regular file, bounded: a FIFO or /dev/zero there never hangs
            self.bootstrap_token_file,
            what="the Space token file",
            hint="Put the token alone in it, as `pair spaces authorize` writes SPACE_ID.txt, or pass it instead.",
            missing_ok=True,
        )
