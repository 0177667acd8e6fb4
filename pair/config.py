"""The CLI's local state under $PAIR_CONFIG_DIR (default ~/.config/pair): the broker URL and the
session. Both files are 0600; the session token is never printed."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pair.api.errors import PairError
from pair.files import write_private

LOGIN_HINT = "Run `pair login EMAIL --key-file PATH --url BROKER_URL`."


def config_dir() -> Path:
    env = os.environ.get("PAIR_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pair"


@dataclass
class Session:
    url: str
    email: str
    token: str
    expires_at: str


def _path(name: str) -> Path:
    return config_dir() / name


def _read(name: str) -> dict[str, str] | None:
    try:
        data = json.loads(_path(name).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PairError(f"Cannot read {_path(name)}: {exc}.", f"Delete it and log in again. {LOGIN_HINT}") from exc
    return data if isinstance(data, dict) else None


def _write(name: str, data: dict[str, str]) -> None:
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(directory / name, json.dumps(data, indent=2) + "\n")


def load_session() -> Session | None:
    data = _read("session.json")
    if not data:
        return None
    try:
        return Session(**{k: str(data[k]) for k in ("url", "email", "token", "expires_at")})
    except KeyError:
        return None


def save_session(session: Session) -> None:
    _write("session.json", asdict(session))
    _write("config.json", {"url": session.url})


def clear_session() -> None:
    _path("session.json").unlink(missing_ok=True)


def broker_url(explicit: str | None = None) -> str | None:
    """The broker to talk to: --url, else PAIR_URL, else the one last logged in to."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("PAIR_URL"):
        return os.environ["PAIR_URL"].rstrip("/")
    try:
        session = load_session()
    except PairError:
        session = None  # damaged: fall back to the saved URL
    if session:
        return session.url
    config = _read("config.json")
    return config.get("url") if config else None
