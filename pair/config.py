"""The CLI's local state under $PAIR_CONFIG_DIR (default ~/.config/pair): the broker URL and the
session. Both files are 0600; the session token is never printed."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pair.api.errors import PairError, login_hint
from pair.files import write_private

URL_HINT = "A broker URL looks like https://pair.example.com or http://127.0.0.1:8000."


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
        raise PairError(f"Cannot read {_path(name)}: {exc}.", f"Delete it and log in again. {login_hint()}") from exc
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
        session = Session(**{k: str(data[k]) for k in ("url", "email", "token", "expires_at")})
    except KeyError:
        return None
    session.url = check_broker_url(session.url, str(_path("session.json")))
    return session


def save_session(session: Session) -> None:
    _write("session.json", asdict(session))
    _write("config.json", {"url": session.url})


def clear_session() -> None:
    _path("session.json").unlink(missing_ok=True)


def broker_url(explicit: str | None = None) -> str | None:
    """The broker to talk to: --url, else PAIR_URL, else the one last logged in to; each checked
    by check_broker_url (PairError when it is not a URL pair can use)."""
    if explicit:
        return check_broker_url(explicit, "--url")
    if os.environ.get("PAIR_URL"):
        return check_broker_url(os.environ["PAIR_URL"], "PAIR_URL")
    try:
        session = load_session()
    except PairError:
        session = None  # damaged: fall back to the saved URL
    if session:
        return session.url
    config = _read("config.json")
    url = config.get("url") if config else None
    return check_broker_url(url, str(_path("config.json"))) if isinstance(url, str) and url else None


def check_broker_url(url: str, source: str) -> str:
    """`url` (from `source`: "--url", "PAIR_URL", a saved file) without a trailing slash, once it
    is an http:// or https:// URL with a host, a port in 1–65535 if any, and only printable ASCII
    without spaces (what httpx and RFC 3986 accept). Raises PairError naming the source, the
    value (escaped) and what is wrong, instead of httpx's traceback or "connection refused"."""
    from urllib.parse import urlsplit

    def bad(why: str) -> PairError:
        shown = url if len(url) <= 80 else url[:80] + "…"
        again = "" if source in ("--url", "PAIR_URL") else "Log in again with --url. "
        return PairError(f"The broker URL {shown!r} ({source}) {why}.", again + URL_HINT)

    if any(not (0x21 <= ord(c) <= 0x7E) for c in url):
        raise bad("contains a space, a control character or a non-ASCII character")
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as exc:
        raise bad(f"is not a URL ({exc})") from exc
    host_port = parts.netloc.rpartition("@")[2]
    after_host = host_port[host_port.find("]") + 1 :] if host_port.startswith("[") else ""
    if host_port.endswith(":") or (after_host and not (after_host[:1] == ":" and after_host[1:].isdigit())):
        raise bad("has no valid port after its host")  # urlsplit overlooks these; httpx refuses them
    if parts.scheme not in ("http", "https"):
        raise bad("does not start with http:// or https://")
    if not parts.hostname:
        raise bad("has no host name")
    if port == 0:
        raise bad("has port 0")
    return url.rstrip("/")


@dataclass
class PendingRequest:
    """An access request this machine filed and waits on (`pair login EMAIL --request`): its
    device code is a secret, kept 0600 like the session, so a second run resumes waiting."""

    url: str
    email: str
    request_id: str
    device_code: str


def load_pending_request() -> PendingRequest | None:
    data = _read("access-request.json")
    if not data:
        return None
    try:
        return PendingRequest(**{k: str(data[k]) for k in ("url", "email", "request_id", "device_code")})
    except KeyError:
        return None


def save_pending_request(pending: PendingRequest) -> None:
    _write("access-request.json", asdict(pending))


def clear_pending_request() -> None:
    _path("access-request.json").unlink(missing_ok=True)
