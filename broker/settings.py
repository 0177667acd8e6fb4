"""Every broker setting, read in one place: a command-line flag, else its environment variable,
else the default. docs/operations.md lists them (a test keeps the two in step)."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")  # uvicorn's


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pair-broker"


@dataclass(frozen=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata={"env": "PAIR_BROKER_HOST"})
    port: int = field(default=8000, metadata={"env": "PAIR_BROKER_PORT"})
    data_dir: Path = field(default_factory=_default_data_dir, metadata={"env": "PAIR_BROKER_DATA_DIR"})
    # The URL containers use to reach the broker; written into every token as `iss`.
    public_url: str = field(default="", metadata={"env": "PAIR_BROKER_PUBLIC_URL"})
    token_ttl: int = field(default=3600, metadata={"env": "PAIR_BROKER_TOKEN_TTL"})
    max_token_ttl: int = field(default=86400, metadata={"env": "PAIR_BROKER_MAX_TOKEN_TTL"})
    session_ttl: int = field(default=30 * 86400, metadata={"env": "PAIR_BROKER_SESSION_TTL"})
    # How long a browser stays signed in to the web page (shorter than a CLI session).
    web_session_ttl: int = field(default=12 * 3600, metadata={"env": "PAIR_BROKER_WEB_SESSION_TTL"})
    # Email of the admin created on first start when the database has no users.
    admin_email: str = field(default="admin@example.com", metadata={"env": "PAIR_BROKER_ADMIN_EMAIL"})
    # How often agents report in; a Space silent for 3 intervals is marked stopped.
    agent_interval: float = field(default=10.0, metadata={"env": "PAIR_BROKER_AGENT_INTERVAL"})
    # How long `pair verify` trusts a snapshot after the agent last heard from the broker.
    snapshot_max_age: int = field(default=120, metadata={"env": "PAIR_BROKER_SNAPSHOT_MAX_AGE"})
    # Seconds a terminal nobody is attached to lives before the agent hangs up its shell (SIGHUP);
    # sent to agents in every heartbeat reply.
    terminal_idle: float = field(default=300.0, metadata={"env": "PAIR_BROKER_TERMINAL_IDLE"})
    log_level: str = field(default="info", metadata={"env": "PAIR_BROKER_LOG_LEVEL"})
    # Shared ports' origins: `*.apps.pair.example.com` (wildcard DNS and certificate), `*.localhost`
    # in development; empty: port sharing is off (broker.apps.hosts.AppsDomain).
    apps_domain: str = field(default="", metadata={"env": "PAIR_BROKER_APPS_DOMAIN"})
    # HOST:PORT of the separate /metrics listener (Prometheus); empty: none.
    metrics_address: str = field(default="", metadata={"env": "PAIR_BROKER_METRICS_ADDRESS"})
    # Where new access requests are announced (POST JSON), if anywhere.
    request_webhook: str = field(default="", metadata={"env": "PAIR_BROKER_REQUEST_WEBHOOK"})
    # Where the broker's data lives: empty for SQLite in the data dir, a sqlite:/// URL, or a
    # postgresql:// URL (several replicas share one PostgreSQL database).
    database: str = field(default="", metadata={"env": "PAIR_BROKER_DATABASE_URL"})
    # The key (32 bytes, base64) that seals the signing keys kept in the database; required with
    # PostgreSQL. Given as the value itself, or as a 0600 file that holds it.
    encryption_key: str = field(default="", repr=False, metadata={"env": "PAIR_BROKER_ENCRYPTION_KEY"})
    encryption_key_file: Path | None = field(default=None, metadata={"env": "PAIR_BROKER_ENCRYPTION_KEY_FILE"})
    # On PostgreSQL, the address the other replicas reach this one at (an http(s) URL on the
    # internal network, e.g. http://10.0.0.5:8000); empty: http://HOST:PORT as it listens.
    replica_address: str = field(default="", metadata={"env": "PAIR_BROKER_REPLICA_ADDRESS"})
    # The addresses (comma-separated IPs or networks, `*` for any) whose X-Forwarded-For and
    # X-Forwarded-Proto the broker believes: its load balancer's. Passed to uvicorn as
    # `forwarded_allow_ips`; empty: uvicorn's default (FORWARDED_ALLOW_IPS, else 127.0.0.1).
    forwarded_allow_ips: str = field(default="", metadata={"env": "PAIR_BROKER_FORWARDED_ALLOW_IPS"})

    @property
    def database_path(self) -> Path:
        return self.data_dir / "broker.db"

    @property
    def database_location(self) -> Path | str:
        """The SQLite file (a Path) or the PostgreSQL URL (a str) the broker uses."""
        if not self.database:
            return self.database_path
        from broker.store.backends import locate

        return locate(self.database)

    @property
    def replica_url(self) -> str:
        """Where the other replicas reach this one (`replica_address`, else as it listens)."""
        return (self.replica_address or f"http://{_url_host(self.host)}:{self.port}").rstrip("/")

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "signing-keys"

    @property
    def url(self) -> str:
        return (self.public_url or f"http://{_url_host(self.host)}:{self.port}").rstrip("/")

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Flags (non-None overrides) win over the environment, which wins over defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:
                values[f.name] = overrides[f.name]
            elif f.metadata.get("env") in os.environ:
                values[f.name] = os.environ[f.metadata["env"]]
        for f in fields(cls):
            if f.name in values:
                # Name the setting as the operator wrote it: the flag or the variable.
                label = "--" + f.name.replace("_", "-") if overrides.get(f.name) is not None else f.metadata["env"]
                values[f.name] = _check(f.name, label, _convert(label, f.type, values[f.name]))
        settings = cls(**values)
        if settings.token_ttl > settings.max_token_ttl:
            raise SettingsError("PAIR_BROKER_TOKEN_TTL is above PAIR_BROKER_MAX_TOKEN_TTL.")
        _check_apps_domain(settings)
        return settings

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        return {f.metadata["env"]: f.name for f in fields(cls)}


class SettingsError(ValueError):
    pass


def _convert(name: str, type_name: Any, value: Any) -> Any:
    if type_name in ("int", int):
        try:
            number = int(value)
        except ValueError as exc:
            raise SettingsError(f"The setting {name} must be a whole number, not {value!r}.") from exc
        if number < 0:
            raise SettingsError(f"The setting {name} must not be negative.")
        return number
    if type_name in ("float", float):
        try:
            decimal = float(value)
        except ValueError as exc:
            raise SettingsError(f"The setting {name} must be a number, not {value!r}.") from exc
        if not math.isfinite(decimal) or decimal <= 0:
            raise SettingsError(f"The setting {name} must be positive.")
        return decimal
    if type_name in ("Path", Path, "Path | None"):
        return Path(value).expanduser()
    return str(value)


def _check(name: str, label: str, value: Any) -> Any:
    """Rules beyond the type, for the settings that have them."""
    if name == "port" and value > 65535:
        raise SettingsError(f"The setting {label} must be a port number from 0 to 65535, not {value}.")
    if name in ("public_url", "request_webhook", "replica_address") and value:
        return check_public_url(label, value)
    if name == "log_level" and value.lower() not in LOG_LEVELS:
        raise SettingsError(f"The setting {label} must be one of {', '.join(LOG_LEVELS)}, not {value!r}.")
    if name == "log_level":
        return value.lower()
    if name == "apps_domain" and value.strip():
        from broker.apps.hosts import AddressError, AppsDomain

        try:
            return str(AppsDomain.parse(value))
        except AddressError as exc:
            raise SettingsError(f"The setting {label}: {exc}") from exc
    if name == "metrics_address" and value:
        split_address(label, value)
    if name == "database" and value:
        from broker.store.backends import DatabaseUrlError, locate

        try:
            locate(value)
        except DatabaseUrlError as exc:
            raise SettingsError(f"The setting {label} is not a usable database URL: {exc}.") from None
    return value


def _check_apps_domain(settings: Settings) -> None:
    """The broker's own host must not lie under its apps domain: every request for it would be
    taken for an app's (broker.app_gate), and the broker would answer nothing but 404s."""
    if not settings.apps_domain:
        return
    from broker.apps.hosts import AppsDomain

    host = urlsplit(settings.url).hostname or ""
    if AppsDomain.parse(settings.apps_domain).covers(host):
        raise SettingsError(
            f"The apps domain {settings.apps_domain} covers the broker's own host {host}: "
            f"give apps a domain of their own, e.g. '*.apps.{host}'."
        )


def split_address(label: str, address: str) -> tuple[str, int]:
    """(host, port) of a listening address written `HOST:PORT` or `[IPv6]:PORT` (RFC 3986's
    authority without user info); port 0 picks a free one. SettingsError otherwise."""
    host, colon, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        valid_host = _is_ip_literal(f"[{host}]", host) and ":" in host
    else:
        valid_host = bool(_HOST_NAME.fullmatch(host)) or _is_ip_literal(host, host)
    if not colon or not valid_host or not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise SettingsError(
            f"The setting {label} must be HOST:PORT (e.g. 127.0.0.1:9464, or [::1]:9464), not {address!r}."
        )
    return host, int(port)


_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?")
_URL_PATH = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")  # RFC 3986 path characters


def check_public_url(label: str, url: str) -> str:
    """`url` if it is an absolute http(s) URL naming a host (RFC 3986: scheme, host, optional
    port and path; no userinfo, query or fragment), else SettingsError. It becomes every token's
    `iss` and the base of every link the broker hands out, so nothing else may ride in it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # an unclosed [IPv6] bracket
        parts, host = urlsplit(""), ""
    if parts.scheme not in ("http", "https"):
        problem = "it must start with http:// or https://"
    elif not host:
        problem = "it names no host"
    elif "@" in parts.netloc:
        problem = "it must not carry a user name or password"
    elif parts.query or parts.fragment or "?" in url or "#" in url:
        problem = "it must not have a query (?) or fragment (#)"
    elif not (_HOST_NAME.fullmatch(host) or _is_ip_literal(parts.netloc, host)):
        problem = f"{host!r} is not a host name or IP address"
    elif not _port_ok(parts.netloc):
        problem = "its port is not a number from 1 to 65535"
    elif not _URL_PATH.fullmatch(parts.path):
        problem = "its path has characters a URL cannot carry unescaped"
    else:
        return urlunsplit(parts)  # the scheme in lower case, as `Settings.url` readers expect
    raise SettingsError(f"The setting {label} is not a usable URL: {problem}.")


def _port_ok(netloc: str) -> bool:
    _, bracket, rest = netloc.rpartition("]")
    _, colon, port = (rest if bracket else netloc).rpartition(":")
    return not colon or (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535)


def _is_ip_literal(netloc: str, host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 or netloc.startswith("[")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a bind-all address is not a URL anyone can use
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
