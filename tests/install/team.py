"""People using the real `pair` executable against a real broker, each with their own config and SSH key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.broker import RealBroker
from tests.support.processes import clean_env, executable
from tests.support.tools import need_tool


class Person:
    def __init__(self, broker: RealBroker, name: str, root: Path) -> None:
        self.email = f"{name}@example.com"
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.env = clean_env(PAIR_CONFIG_DIR=str(self.dir / "config"), HOME=str(self.dir))
        key_file = broker.add_user(self.email, self.dir)
        self.ok("login", self.email, "--key-file", str(key_file), "--url", broker.url)
        self.key = self.dir / "id_ed25519"
        subprocess.run(
            [need_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", self.email, "-f", str(self.key)],
            check=True,
        )
        self.ok("keys", "add", f"{self.key}.pub")

    def pair(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable("pair"), *args],
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.pair(*args)
        assert result.returncode == 0, f"pair {' '.join(args)}:\n{result.stderr}"
        return result.stdout

    def state(self, name: str) -> str | None:
        spaces = json.loads(self.ok("spaces", "list", "--json"))
        return next((str(s["state"]) for s in spaces if s["name"] == name), None)

    def ssh(self, port: int, host_key: str, *command: str, user: str = "root") -> subprocess.CompletedProcess[str]:
        known_hosts = self.dir / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
        return subprocess.run(
            [
                need_tool("ssh"),
                "-i", str(self.key),
                "-p", str(port),
                "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "StrictHostKeyChecking=yes",
                "-o", "ConnectTimeout=10",
                f"{user}@127.0.0.1",
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )  # fmt: skip
