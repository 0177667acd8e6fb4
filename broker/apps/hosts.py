"""App addresses: `PORT--SPACE--OWNER.<apps domain>`, one origin per shared port (Coder's scheme).

The whole `PORT--SPACE--OWNER` part is ONE DNS label, so it obeys RFC 1035 §2.3.1 / RFC 1123 §2.1:
at most 63 characters of lowercase letters, digits and hyphens, no leading or trailing hyphen.
`--` separates the three parts, so neither SPACE nor OWNER may contain `--`; each part is a
*segment*: `[a-z0-9]+(-[a-z0-9]+)*`. Budgets that always fit one label: the port is 1–5 digits
(1–65535, no leading zero, so a port has exactly one address), the Space segment at most
SPACE_LABEL_MAX, the owner handle at most HANDLE_MAX (5 + 2 + 30 + 2 + 24 = 63).

Space names (broker.names) may contain `_` and `--` and end with `-` or `_`, none of which a
segment can, and may be longer than the budget. `space_label` maps a name to a segment:
`_` becomes `-` when that yields a valid segment within budget (`dynamic_stark` →
`dynamic-stark`); otherwise, or when asked (`hashed=True`), a shortened readable prefix plus `-`
and 6 base32 characters of SHA-256 of the exact name. The readable form is not injective
(`a_b` and `a-b` share it), so an address is found by lookup, not by inverting the mapping: the
store records each shared port's full label, unique, and uses the hashed form when the readable
one is already another Space's. `parse_host` only checks syntax and splits the parts.

Owners are people with emails; `handle_from_email` derives a segment from the local part, and
the store keeps one unique handle per user (`handle_with_suffix` for collisions).
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

SEPARATOR = "--"
LABEL_MAX = 63  # RFC 1035 §2.3.4
HOSTNAME_MAX = 253  # RFC 1035 §2.3.4: 255 octets on the wire, 253 characters written out
PORT_MAX = 65535
HANDLE_MAX = 24
SPACE_LABEL_MAX = LABEL_MAX - 5 - 2 * len(SEPARATOR) - HANDLE_MAX  # 30
HASH_CHARS = 6

SEGMENT = r"[a-z0-9]+(?:-[a-z0-9]+)*"
SEGMENT_RE = re.compile(SEGMENT)
# A DNS label in the suffix (LDH, RFC 1123 allows a leading digit; `xn--` IDNA labels included).
LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
ADDRESS_RE = re.compile(rf"([1-9][0-9]{{0,4}}){SEPARATOR}({SEGMENT}){SEPARATOR}({SEGMENT})")
PORT_RE = re.compile(r"[0-9]{1,5}")

DOMAIN_RULE = (
    "a wildcard such as '*.apps.pair.example.com' or '*.localhost', optionally with ':PORT' "
    "(the port that app URLs show)"
)


class AddressError(ValueError):
    """A setting or name that cannot form app addresses; the message is one sentence."""


@dataclass(frozen=True, slots=True)
class AppAddress:
    """The parts of one app origin's first label."""

    port: int  # 1–65535, the port inside the container
    space: str  # a segment: the Space's label (space_label), not necessarily its name
    owner: str  # a segment: the owner's handle

    def __post_init__(self) -> None:
        if not 1 <= self.port <= PORT_MAX:
            raise AddressError(f"Port {self.port} is outside 1–{PORT_MAX}.")
        if not is_segment(self.space) or len(self.space) > SPACE_LABEL_MAX:
            raise AddressError(f"{self.space!r} is not a Space label (see broker.apps.hosts.space_label).")
        if not is_segment(self.owner) or len(self.owner) > HANDLE_MAX:
            raise AddressError(f"{self.owner!r} is not an owner handle (see broker.apps.hosts.handle_from_email).")

    @property
    def label(self) -> str:
        """`PORT--SPACE--OWNER`, at most 63 characters."""
        return f"{self.port}{SEPARATOR}{self.space}{SEPARATOR}{self.owner}"

    @classmethod
    def parse_label(cls, label: str) -> AppAddress | None:
        """The address a label names, or None if it is not one (case-insensitive)."""
        match = ADDRESS_RE.fullmatch(label.lower())
        if match is None:
            return None
        port, space, owner = int(match.group(1)), match.group(2), match.group(3)
        if port > PORT_MAX or len(space) > SPACE_LABEL_MAX or len(owner) > HANDLE_MAX:
            return None
        return cls(port, space, owner)


@dataclass(frozen=True, slots=True)
class AppsDomain:
    """The `--apps-domain` setting: app hosts are one label under `suffix`.

    `port` is only what app URLs show (`*.localhost:8000` for `make run`); requests are matched
    by host name alone, since a reverse proxy in front may listen on another port."""

    suffix: str  # lowercase, no leading or trailing dot: "apps.pair.example.com"
    port: int | None = None

    @classmethod
    def parse(cls, setting: str) -> AppsDomain:
        """Read `*.DOMAIN[:PORT]`; raise AddressError saying what is wrong.

        DOMAIN is one or more LDH labels (RFC 1123 §2.1), its last not all digits (so never an IP
        address), short enough that a 63-character app label still fits in 253 characters."""
        text = setting.strip().lower()
        if not text.startswith("*."):
            raise AddressError(f"The apps domain {setting!r} must be {DOMAIN_RULE}.")
        name, colon, port_text = text[2:].partition(":")
        port = None
        if colon:
            if not PORT_RE.fullmatch(port_text) or not 1 <= int(port_text) <= PORT_MAX:
                raise AddressError(f"The apps domain {setting!r} has an invalid port; it must be {DOMAIN_RULE}.")
            port = int(port_text)
        labels = name.split(".")
        if not name or not all(LABEL_RE.fullmatch(label) for label in labels) or labels[-1].isdigit():
            raise AddressError(f"The apps domain {setting!r} is not a DNS name; it must be {DOMAIN_RULE}.")
        if len(name) + 1 + LABEL_MAX > HOSTNAME_MAX:
            raise AddressError(f"The apps domain {setting!r} is too long for app addresses under it.")
        return cls(name, port)

    def __str__(self) -> str:
        return f"*.{self.suffix}" + (f":{self.port}" if self.port else "")

    def covers(self, host: str) -> bool:
        """Whether a request's Host (`name[:port]`, any case) lies under this domain, at any depth.

        Everything it covers belongs to the app side, which answers 404 for what does not parse:
        the broker's own pages are never served on an app origin."""
        name = _host_name(host)
        return name is not None and name.rstrip(".").endswith("." + self.suffix)

    def parse_host(self, host: str) -> AppAddress | None:
        """The address a request's Host names, or None: not exactly one label under the suffix,
        or that label is not `PORT--SPACE--OWNER` within the rules above. Case-insensitive; any
        port is ignored; a trailing dot (another origin to a browser) is refused."""
        name = _host_name(host)
        if name is None or len(name) > HOSTNAME_MAX:
            return None
        label, dot, rest = name.partition(".")
        if not dot or rest != self.suffix:
            return None
        return AppAddress.parse_label(label)

    def host(self, address: AppAddress) -> str:
        """The host name of an address: `8080--demo--alice.apps.pair.example.com`."""
        return f"{address.label}.{self.suffix}"

    def origin(self, address: AppAddress, scheme: str) -> str:
        """`scheme://host[:port]` with the setting's port, if it named one (scheme: http or https)."""
        return f"{scheme}://{self.host(address)}" + (f":{self.port}" if self.port else "")


REG_NAME_RE = re.compile(r"[a-z0-9._~!$&'()*+,;=%-]+")  # RFC 3986 §3.2.2 reg-name, lowercase
IP_LITERAL_RE = re.compile(r"\[[0-9a-f:.]+\]|\[v[0-9a-f]+\.[a-z0-9._~!$&'()*+,;=:-]+\]")


def host_name(host: str) -> str | None:
    """The lowercase name of a Host header value (RFC 9110 §7.2: `uri-host [":" port]`), or None
    if it is malformed: not a reg-name or IP literal, or a port that is empty, not digits, or
    outside 1–65535. The one parser of Host for the broker (broker.app_gate refuses None with
    400, so a request cannot slip past the apps domain with an odd Host)."""
    text = host.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text.partition("]")
        name += bracket
        colon, port = rest[:1], rest[1:]
        if (rest and colon != ":") or not IP_LITERAL_RE.fullmatch(name):
            return None
    else:
        name, colon, port = text.partition(":")
        if not REG_NAME_RE.fullmatch(name):
            return None
    if colon and (not PORT_RE.fullmatch(port) or not 1 <= int(port) <= PORT_MAX):
        return None
    return name


def _host_name(host: str) -> str | None:
    """`host_name`, but None for an IP literal too (never an app's)."""
    name = host_name(host)
    return None if name is None or name.startswith("[") else name


def is_segment(text: str) -> bool:
    """Lowercase letters and digits in runs joined by single hyphens: a part of an app label."""
    return SEGMENT_RE.fullmatch(text) is not None


def space_label(name: str, *, hashed: bool = False) -> str:
    """The segment that stands for Space `name` (broker.names.NAME_RE) in app addresses.

    `name` with `_` → `-` when that is a segment of at most SPACE_LABEL_MAX characters and not
    `hashed`; otherwise `PREFIX-XXXXXX`: the name with runs of `-`/`_` as one `-`, cut to fit,
    then 6 lowercase base32 characters of SHA-256(name). Deterministic; not invertible (see the
    module docstring for how addresses are resolved)."""
    readable = name.lower().replace("_", "-")
    if not hashed and is_segment(readable) and len(readable) <= SPACE_LABEL_MAX:
        return readable
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()).decode().lower()[:HASH_CHARS]
    prefix = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[: SPACE_LABEL_MAX - HASH_CHARS - 1].rstrip("-")
    return f"{prefix}-{digest}" if prefix else digest


def handle_from_email(email: str) -> str:
    """A DNS-safe owner handle from an email's local part: `Jane.Doe+pair@x` → `jane-doe-pair`.

    Accents are dropped (NFKD), the rest lowercased, every run of other characters becomes one
    `-`, the ends are trimmed, and the result is cut to HANDLE_MAX; `user` if nothing is left.
    Not unique: the store gives each user one handle, adding `handle_with_suffix` on collision."""
    local = email.rpartition("@")[0] or email
    ascii_text = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode().lower()
    handle = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")[:HANDLE_MAX].rstrip("-")
    return handle or "user"


def handle_with_suffix(handle: str, number: int) -> str:
    """`handle` made distinct with `-NUMBER` (NUMBER ≥ 2), cut so the result is a valid handle."""
    if number < 2:
        raise ValueError("A handle suffix starts at 2.")
    suffix = f"-{number}"
    return handle[: HANDLE_MAX - len(suffix)].rstrip("-") + suffix


def handle_candidates(email: str) -> Iterator[str]:
    """The handles to try in order for a new user: the plain one, then `-2`, `-3`, …"""
    base = handle_from_email(email)
    yield base
    number = 2
    while True:
        yield handle_with_suffix(base, number)
        number += 1
