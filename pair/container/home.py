"""Files in $PAIR_HOME (default /opt/pair), the container side's one directory."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from pair.api.errors import PairError
from pair.files import write_private


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
    def registration_file(self) -> Path:
        return self.root / "agent.json"

    @property
    def instance_id_file(self) -> Path:
        return self.root / "instance-id"

    @property
    def broker_url_file(self) -> Path:
        return self.root / "broker-url"  # install.sh --broker-url

    def broker_url_override(self) -> str:
        """PAIR_URL, else the URL install.sh was given, else "" (use the token's issuer)."""
        if os.environ.get("PAIR_URL"):
            return os.environ["PAIR_URL"].rstrip("/")
        try:
            return self.broker_url_file.read_text().strip().rstrip("/")
        except FileNotFoundError:
            return ""

    def ssh_port(self) -> int:
        """The port of the Space's sshd (install.sh --ssh-port writes it; 2222 otherwise)."""
        try:
            return int((self.root / "ssh-port").read_text().strip())
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

    def instance_id(self) -> str:
        """This container's random id, created (and persisted) before anything is sent."""
        try:
            existing = self.instance_id_file.read_text().strip()
        except FileNotFoundError:
            existing = ""
        if existing:
            return existing
        value = "inst_" + secrets.token_hex(16)
        write_private(self.instance_id_file, value + "\n")
        return value

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

    def stored_token(self) -> str:
        try:
            return self.bootstrap_token_file.read_text().strip()
        except FileNotFoundError:
            return ""
