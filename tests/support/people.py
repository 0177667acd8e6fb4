"""People using the real `pair` executable against a real broker, each with their own config
directory (and, usually, their own SSH key registered)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.broker import RealBroker
from tests.support.processes import clean_env, executable
from tests.support.tools import need_tool


def ssh_direct(
    key: Path, port: int, host_key: str, known_hosts: Path, *command: str, user: str = "root"
) -> subprocess.CompletedProcess[str]:
    """Plain ssh to 127.0.0.1:PORT with `key`, the server's host key pinned."""
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    options = (
        "BatchMode=yes",
        "IdentitiesOnly=yes",
        f"UserKnownHostsFile={known_hosts}",
        "StrictHostKeyChecking=yes",
        "ConnectTimeout=10",
    )
    return subprocess.run(
        [
            need_tool("ssh"),
            "-i",
            str(key),
            "-p",
            str(port),
            *(a for o in options for a in ("-o", o)),
            f"{user}@127.0.0.1",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class Person:
    def __init__(self, broker: RealBroker, name: str, root: Path, *, ssh_key: bool = True) -> None:
        self.email = f"{name}@example.com"
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.env = clean_env(PAIR_CONFIG_DIR=str(self.dir / "config"), HOME=str(self.dir))
        self.key_file = broker.add_user(self.email, self.dir)  # the auth key
        self.ok("login", self.email, "--key-file", str(self.key_file), "--url", broker.url)
        self.key = self.dir / "id_ed25519"  # the SSH key
        if ssh_key:
            subprocess.run(
                [need_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", self.email, "-f", str(self.key)],
                check=True,
            )
            self.ok("keys", "add", f"{self.key}.pub")

    def pair(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [executable("pair"), *args],
            cwd=self.dir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = self.pair(*args, env=env)
        assert result.returncode == 0, f"pair {' '.join(args)} failed:\n{result.stderr}"
        return result.stdout

    @property
    def session_token(self) -> str:
        """The session `pair login` saved (for a test that speaks to the broker itself)."""
        return str(json.loads((self.dir / "config" / "session.json").read_text())["token"])

    def spaces(self) -> list[dict[str, object]]:
        data: list[dict[str, object]] = json.loads(self.ok("spaces", "list", "--json"))
        return data

    def state(self, name: str) -> str | None:
        return next((str(s["state"]) for s in self.spaces() if s["name"] == name), None)

    def ssh(self, port: int, host_key: str, *command: str, user: str = "root") -> subprocess.CompletedProcess[str]:
        return ssh_direct(self.key, port, host_key, self.dir / "known_hosts", *command, user=user)

    # -- through the relay --------------------------------------------------------------------

    def connect(self, *command: str, space: str = "demo") -> list[str]:
        """argv for `pair spaces connect` with this person's key, running `command` in the Space."""
        return [
            executable("pair"),
            "spaces",
            "connect",
            space,
            "--",
            "-i",
            str(self.key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            *command,
        ]

    def run_in_space(self, *command: str, space: str = "demo") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.connect(*command, space=space),
            cwd=self.dir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    @contextmanager
    def session(self, space: str = "demo") -> Iterator[subprocess.Popen[str]]:
        """A long SSH session: it prints `in-session` once the shell runs, then waits."""
        with subprocess.Popen(
            self.connect("echo in-session && exec sleep 60", space=space),
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        ) as proc:
            try:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line == "in-session\n", (line, proc.stderr.read() if proc.stderr else "")
                yield proc
            finally:
                proc.kill()
