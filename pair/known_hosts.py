"""pair's own known_hosts file, `$PAIR_CONFIG_DIR/known_hosts`: every Space's SSH host keys pinned
under the alias `SP_ID.pair` (ssh's HostKeyAlias), as its container reported them at bootstrap
and the broker recorded them. ssh checks against it with StrictHostKeyChecking, so there is no
trust-on-first-use prompt.

`pair spaces connect` and `ssh-config` write the whole file from the Space list; `pair spaces
proxy` (ssh's ProxyCommand, on every connection) rewrites one Space's lines when the broker's
record changed (a rebuilt container, bootstrapped again), before ssh sees the server's key, so
plain `ssh NAME.pair` keeps working. Each line is built only from a checked id and keys that parse
as exactly one `TYPE BASE64` host key (pair.api.grammar): nothing else reaches the file, so no
marker (`@revoked`, `@cert-authority`), option or second line can. Writers take a lock, so two
proxies starting at once do not lose each other's update.

Loaded by the proxy: standard library at import; pair.sshkeys (and OpenSSL) only when a key changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pair.config import config_dir
from pair.files import write_private

SUFFIX = ".pair"


def path() -> Path:
    return (config_dir() / "known_hosts").absolute()


def alias(space_id: str) -> str:
    """The name ssh looks the Space's key up by (HostKeyAlias): `SP_ID.pair`."""
    return space_id + SUFFIX


def lines_for(space_id: str, host_keys: Iterable[str]) -> list[str]:
    """The known_hosts lines pinning `host_keys` for one Space. Raises pair.api.grammar.Invalid
    when the id is not an sp_… id or a key is not exactly one `TYPE BASE64` host key."""
    from pair.api.grammar import Invalid, host_key_problem, is_space_id, shown

    if not is_space_id(space_id):
        raise Invalid(f"{shown(space_id)} is not a Space id.")
    out = []
    for key in host_keys:
        problem = host_key_problem(key)
        if problem:
            raise Invalid(f"The Space {space_id} has a bad host key: {problem}.")
        out.append(f"{alias(space_id)} {key}")
    return out


@contextmanager
def _locked() -> Iterator[None]:
    """Hold an exclusive lock next to the file (it is replaced by rename, so not on the file itself)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; the rename still keeps the file whole
        yield
        return
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / ".known_hosts.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _read() -> str:
    try:
        return path().read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def write(pins: dict[str, list[str]]) -> None:
    """Replace the whole file with these Spaces' pins (space id → its lines from `lines_for`);
    left as it is when it holds exactly them already (every `connect`: no rewrite, no fsync)."""
    text = "".join(line + "\n" for lines in pins.values() for line in lines)
    with _locked():
        if not path().is_file() or _read() != text:  # an empty file is written too: ssh-config points at it
            write_private(path(), text)


def refresh(space_id: str, host_keys: list[str]) -> bool:
    """Make the file pin exactly `host_keys` for one Space, keeping every other line. Returns
    whether it changed anything. Raises pair.api.grammar.Invalid (bad keys: nothing is written)
    and OSError."""
    from pair.api.grammar import Invalid, is_space_id, shown

    if not is_space_id(space_id):
        raise Invalid(f"{shown(space_id)} is not a Space id.")
    mine = alias(space_id) + " "
    wanted = [mine + key for key in host_keys]
    if [line for line in _read().splitlines() if line.startswith(mine)] == wanted:
        return False  # the common case: one small read, nothing imported, nothing written
    wanted = lines_for(space_id, host_keys)
    with _locked():
        others = [line for line in _read().splitlines() if line and not line.startswith(mine)]
        write_private(path(), "".join(line + "\n" for line in [*others, *wanted]))
    return True
