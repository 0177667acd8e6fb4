"""Which private keys ssh should offer a Space: the private halves, on this machine, of the public
keys the person registered with the broker.

ssh offers only its default identities (`~/.ssh/id_*`, from the passwd entry's home) unless told
otherwise, so a key added with `pair keys add ~/.ssh/other.pub` would never be tried. `pair keys
add` remembers the .pub path it read (`$PAIR_CONFIG_DIR/keys.json`); `~/.ssh/*.pub` are looked at
too. A candidate counts when its fingerprint is one the broker lists for the person and its
private half (the same path without `.pub`) exists; the private key itself is never read. When
none does, ssh keeps its defaults (the agent, `~/.ssh/id_*`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pair import sshkeys
from pair.api.errors import PairError
from pair.config import config_dir
from pair.files import read_small_text, write_private


def _store() -> Path:
    return config_dir() / "keys.json"


def remembered() -> list[Path]:
    """The .pub paths `pair keys add` read, newest last."""
    try:
        data = json.loads(_store().read_text())
    except (OSError, ValueError):
        return []
    paths = data.get("public_keys") if isinstance(data, dict) else None
    return [Path(p) for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def remember(public_key: Path) -> None:
    """Note where a registered public key lives, so connect and ssh-config find its private half."""
    path = public_key.expanduser().absolute()
    paths = [p for p in remembered() if p != path] + [path]
    config_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(_store(), json.dumps({"public_keys": [str(p) for p in paths]}, indent=2) + "\n")


def _fingerprint(public_key: Path) -> str | None:
    """The key's fingerprint, or None for anything that is not a small regular file holding one
    (read_small_text: a FIFO or device is never opened for a blocking read)."""
    try:
        return sshkeys.parse_public_key(read_small_text(public_key, what="a public key")).fingerprint
    except (PairError, sshkeys.InvalidKeyError):
        return None


def _candidates() -> Iterable[Path]:
    yield from remembered()
    try:
        yield from sorted((Path.home() / ".ssh").glob("*.pub"))
    except OSError:
        return


def private_keys(registered: Iterable[str]) -> list[Path]:
    """Private key files whose public halves have one of the `registered` fingerprints (SHA256:…),
    each once, in the order found."""
    wanted = set(registered)
    found: list[Path] = []
    for public_key in _candidates():
        if public_key.suffix != ".pub":
            continue
        private = public_key.with_suffix("")
        if private in found or not private.is_file() or _fingerprint(public_key) not in wanted:
            continue
        found.append(private)
    return found
