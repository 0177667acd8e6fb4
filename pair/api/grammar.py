"""What each piece of text the broker, the CLI and a container hand each other may look like.

One grammar, checked where the text enters: the broker checks a container's facts at bootstrap,
check-in and heartbeat, and emails whenever a person names one; the CLI checks every Space the
broker sends before its name, id, login user or host keys reach an ssh config, a known_hosts
file or an ssh argument (pair.api.fields.check_facts, space_problem and space_from_json ask the
rules here and the wire types' grammar). Values that pass need no quoting in any of those
places, which is what the rules below are for (escaping where text leaves is the second line:
pair.printable, pair.cli.ssh).

Only the wire contract's patterns at import (pair.sshkeys, and so OpenSSL, loads when a host key
is checked).
"""

from __future__ import annotations

import re
import unicodedata
from typing import get_args

from pair.api import models as m
from pair.api import terminal as tp

__all__ = [
    "HOST_KEY_TYPES",
    "NAME_RULE",
    "Invalid",
    "container_digest",
    "container_identity",
    "email_address",
    "host_key_problem",
    "is_email",
    "is_login_user",
    "is_space_id",
    "is_space_name",
    "label_problem",
    "shown",
    "space_name_from",
    "terminal_id",
]

# The name and email rules are the wire contract's (pair.api.models), so /openapi.json states
# exactly what the broker accepts; they are compiled here for both sides.
NAME_RE = re.compile(m.SPACE_NAME_PATTERN)
NAME_RULE = m.NAME_RULE
EMAIL_RE = re.compile(m.EMAIL_PATTERN)
MAX_EMAIL = m.EMAIL_MAX_LENGTH
SPACE_ID_RE = re.compile(m.SPACE_ID_BODY)  # broker.credentials.new_id's ids, opaque (pair.api.models)
LOGIN_USER_RE = re.compile(m.whole(m.LOGIN_USER_BODY))
HOSTNAME_RE = re.compile(m.whole(m.HOSTNAME_BODY))
VERSION_RE = re.compile(m.whole(m.VERSION_BODY))
HOST_KEY_TYPES = m.HOST_KEY_TYPES  # what sshd offers as host keys (ssh-keygen -A); sk-* are user keys
# A state a newer broker may add (the wire's SpaceState lists today's): shown as it is, so it
# must need no escaping anywhere a state goes (a table, an ssh config comment).
STATE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
KNOWN_STATES = frozenset(get_args(m.SpaceState))


class Invalid(ValueError):
    """A value does not fit its grammar: `message` says which and why, `hint` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def shown(value: str, limit: int = 60) -> str:
    """A value quoted for a message: repr() escapes control, C1 and bidi characters."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def is_space_name(text: str) -> bool:
    return NAME_RE.match(text) is not None


_NOT_IN_NAME = re.compile(r"[^a-z0-9_-]+")
_EDGES = re.compile(r"^[^a-z0-9_-]+|[^a-z0-9_-]+$")
MAX_NAME = 63


def space_name_from(text: str, fallback: str = "container") -> str:
    """`text` (a container's name: CODESPACE_NAME, DEVWORKSPACE_NAME, a host name) made into a
    Space name (NAME_RULE): case-folded, letters stripped of their accents (Unicode NFKD without
    combining marks: `ünïcödé` → `unicode`), other characters at either end dropped and every
    run of them inside one `-`, leading `-`/`_` dropped, cut to 63 characters; `fallback` when
    nothing is left. A valid name maps to itself. Names that differ can map to one Space name:
    the broker tells containers apart by container_identity, not by this."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))
    name = _NOT_IN_NAME.sub("-", _EDGES.sub("", plain)).lstrip("-_")[:MAX_NAME]
    return name if is_space_name(name) else fallback


def container_digest(raw: str) -> str:
    """SHA-256 (hex) of a container's raw name (UTF-8; an environment's undecodable bytes kept
    as they came, PEP 383), sent with its Space name so the broker can tell containers apart."""
    import hashlib  # only a bootstrap and the broker need it

    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def container_identity(name: str, digest: str | None) -> str:
    """What makes "the same container" for a Space key (stored with its Space): the container's
    raw name. A raw name that is its own Space name (`name`, whose digest `digest` is) is kept as
    it is, as is `name` from a container that sends no digest (pair before 2026-11-30), so their
    rebuilds find their Spaces; any other is `sha256:DIGEST`, which no Space name can be (':').
    So two different raw names never share a Space, whatever their cleaned names (`my.app`,
    `my-app`, and every non-Latin name, which all clean to one name), and one raw name always
    finds its own."""
    if digest is None or digest == container_digest(name):
        return name
    return f"sha256:{digest}"


def is_space_id(text: str) -> bool:
    return SPACE_ID_RE.fullmatch(text) is not None


def is_email(text: str) -> bool:
    """Whether `text` is an email address as pair accepts them: a dot-atom addr-spec without
    specials, quotes, white space, control or bidi characters (pair.api.models.EMAIL_PATTERN), at
    most 254 characters (RFC 5321)."""
    return len(text) <= MAX_EMAIL and EMAIL_RE.match(text) is not None


def email_address(text: str) -> str:
    """`text` as pair keeps an email address: in lower case (pair.api.models.EMAIL_PATTERN's rule,
    as `is_email`). Raises Invalid, naming the value escaped, when it is not one."""
    if not is_email(text):
        raise Invalid(f"{shown(text)} is not an email address.", "Name a person by their email, name@example.com.")
    return text.lower()


TERMINAL_ID_RE = re.compile(tp.TERMINAL_ID_PATTERN)
TERMINALS_HINT = "List them with `pair spaces terminals SPACE`."


def terminal_id(text: str) -> str:
    """`text` if it is a terminal id (pair.api.terminal.TERMINAL_ID_PATTERN: `term_` and 12
    lowercase base32 characters, as the agent makes them). Raises Invalid, naming the value
    escaped, when it is not one."""
    if TERMINAL_ID_RE.fullmatch(text) is None:
        raise Invalid(f"{shown(text)} is not a terminal id (term_ and 12 letters and digits).", TERMINALS_HINT)
    return text


def is_login_user(text: str) -> bool:
    return LOGIN_USER_RE.match(text) is not None


def host_key_problem(entry: str) -> str | None:
    """Why `entry` is not exactly one host public key as `TYPE BASE64` (no comment, options,
    marker or second line), or None when it is. Parsed by pair.sshkeys, so the blob must also
    decode to a key of its stated type."""
    from pair import sshkeys

    try:
        key = sshkeys.parse_public_key(entry)
    except sshkeys.InvalidKeyError as exc:
        return f"the host key {shown(entry)} is not a public key ({exc.message})"
    if key.key_type not in HOST_KEY_TYPES:
        return f"the host key {shown(entry)} is of type {key.key_type}, which sshd does not use for host keys"
    if key.openssh() != entry:
        return f"the host key {shown(entry)} is not a single `TYPE BASE64` pair"
    return None


LABEL_MAX = 80  # pair.api.models.PortLabel
# Unicode general categories a port's label may not hold (Unicode Standard Annex #44, §5.7.1):
# Cc controls (newline, tab, ESC…), Cf formatting, which includes the bidirectional controls of
# UAX #9 (U+202A–U+202E, U+2066–U+2069, U+200E/F, U+061C) and invisible characters (U+200B,
# U+2060, U+FEFF) that make a label look other than it reads, Zl/Zp line and paragraph
# separators, and Cs lone surrogates.
_LABEL_REFUSED = {
    "Cc": "a control character",
    "Cf": "a bidirectional or invisible formatting character, which makes text look other than it reads",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Cs": "a lone surrogate",
}


def label_problem(label: str) -> str | None:
    """Why `label` cannot be a shared port's label (one sentence naming the cause and the
    offending character as `U+XXXX`), or None: at most LABEL_MAX characters of one line of
    visible text (see _LABEL_REFUSED for what is not)."""
    for char in label:
        cause = _LABEL_REFUSED.get(unicodedata.category(char))
        if cause is not None:
            return f"A port's label cannot hold {cause} (U+{ord(char):04X})."
    if len(label) > LABEL_MAX:
        return f"A port's label is at most {LABEL_MAX} characters; this one has {len(label)}."
    return None
