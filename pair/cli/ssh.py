"""How plain `ssh` reaches a Space: the ProxyCommand, and host keys pinned to what the container
reported at bootstrap (no trust-on-first-use prompt). Shared by `connect` and `ssh-config`."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from pair.api.models import Space
from pair.api.refs import id_alias
from pair.config import config_dir
from pair.files import write_private


def known_hosts_file() -> Path:
    return (config_dir() / "known_hosts").absolute()


def host_key_alias(space: Space) -> str:
    return id_alias(space)


def pair_command() -> str:
    """This `pair`, by absolute path: ssh runs the ProxyCommand without our PATH guarantees."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "pair" and argv0.is_file():
        return str(argv0.resolve())
    return shutil.which("pair") or str(Path(sys.executable).parent / "pair")


def proxy_command(space: Space) -> str:
    # ssh expands %-tokens in ProxyCommand, so a literal % in the path is doubled.
    return f"{shlex.quote(pair_command()).replace('%', '%%')} spaces proxy {space.id}"


def write_known_hosts(spaces: list[Space]) -> None:
    """Pin every visible Space's host key under its alias (atomically; the file is ours alone)."""
    lines = [f"{host_key_alias(s)} {key}" for s in spaces if s.container for key in s.container.host_keys]
    config_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(known_hosts_file(), "".join(line + "\n" for line in lines))


def login_user(space: Space) -> str:
    return (space.container.login_user if space.container else "") or "root"


def ssh_options(space: Space) -> dict[str, str]:
    """The ssh_config options for one Space, as `-o` pairs or `Host` block lines."""
    return {
        "User": login_user(space),
        "ProxyCommand": proxy_command(space),
        "HostKeyAlias": host_key_alias(space),
        "UserKnownHostsFile": str(known_hosts_file()),
        "StrictHostKeyChecking": "yes",
        "ServerAliveInterval": "30",
    }
