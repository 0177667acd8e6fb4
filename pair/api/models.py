"""Every request and response body, and the Space token's claims: the wire contract.

The broker imports these types; `pair` never imports the broker. Field names are the JSON names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec

from pair.api.terminal import RoleChange as TerminalRoleChange
from pair.api.terminal import TerminalInfo, TerminalTarget
from pair.api.wire import Struct, grammar_meta


def whole(body: str) -> str:
    """A regex that matches all of a string and nothing more, alike in Python's `re` (used with
    re.match) and in ECMA-262, JSON Schema's dialect: Python's `$` also matches before a final
    newline, which the lookahead refuses."""
    return f"^(?:{body})$(?!\\n)"


# The rules of names and emails, stated once: msgspec enforces them where a request is decoded
# (the types below), /openapi.json carries them, so the document is exactly as strict as the server.
SPACE_NAME_BODY = r"[a-z0-9][a-z0-9_-]{0,62}"  # an SSH host alias, a URL segment: no quoting
SPACE_NAME_PATTERN = whole(SPACE_NAME_BODY)
# An addr-spec in its dot-atom form (RFC 5322 3.4.1), letters of any script allowed (RFC 6531).
# An atom is anything but the specials `()<>[]:;@\,."` and `'` and every character that shows
# nothing or can pass for another: Unicode's control (Cc), format (Cf: soft hyphen, word joiner,
# bidi, tags…), space and separator (Zs, Zl, Zp) and private-use (Co) characters and the
# Default_Ignorable_Code_Points (Hangul fillers, variation selectors…), as of Unicode 14. (Lone
# surrogates never arrive: JSON decoding refuses them, and a class of them is no ECMA regex.)
# (tests/unit/test_grammar.py checks the list against the running Python's unicodedata). So two
# emails that look the same are the same, and none can reach an ssh config, a terminal or a page.
# Spelled out: `\\s`, `\\w` and `\\p{…}` mean different sets (or nothing) in Python and in JSON
# Schema validators; characters past U+FFFF are written as themselves. Stored in lower case.
_INVISIBLE_BMP = (
    r"\x00-\x20\x7f-\xa0\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u1680"
    r"\u17b4\u17b5\u180b-\u180f\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\u3164\ue000-\uf8ff\ufe00-\ufe0f"
    r"\ufeff\uffa0\ufff0-\ufffb"
)
_INVISIBLE_ASTRAL = "".join(
    f"{chr(first)}-{chr(last)}"
    for first, last in (
        (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
        (0xE0000, 0xE0FFF), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
    )
)  # fmt: skip
_EMAIL_ATOM = rf"[^@.{_INVISIBLE_BMP}{_INVISIBLE_ASTRAL}()<>\[\]:;\\,\"']+"
_EMAIL_LABEL = rf"(?!-){_EMAIL_ATOM}"  # a domain label does not start with a hyphen (RFC 1035)
EMAIL_BODY = (
    rf"{_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*"
    rf"@(?:{_EMAIL_LABEL}(?:\.{_EMAIL_LABEL})+|[Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt])"
)
EMAIL_PATTERN = whole(EMAIL_BODY)
EMAIL_MAX_LENGTH = 254  # RFC 5321 4.5.3.1.3: a path is at most 256 octets, with its angle brackets
MIN_TOKEN_TTL = 60  # seconds; the most is a broker setting (PAIR_BROKER_MAX_TOKEN_TTL)


# The fields with a grammar, and the one sentence each is refused with: msgspec enforces them when
# the broker decodes a request (and when the CLI checks one before sending it, pair.api.fields),
# and /openapi.json states them. A refusal reads "'VALUE' is not WHAT." with RULE as its hint.
NAME_RULE = "1–63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
_NAME = {"pattern": SPACE_NAME_PATTERN, "max_length": 63}
SpaceName = Annotated[str, grammar_meta("a valid Space name", f"A Space name is {NAME_RULE}.", **_NAME)]
TemplateName = Annotated[str, grammar_meta("a valid template name", f"A template name is {NAME_RULE}.", **_NAME)]
GroupName = Annotated[str, grammar_meta("a valid group name", f"A group name is {NAME_RULE}.", **_NAME)]
SpaceKeyName = Annotated[str, grammar_meta("a valid Space key name", f"A Space key name is {NAME_RULE}.", **_NAME)]
Email = Annotated[
    str,
    grammar_meta(
        "an email address",
        "An email address has the form name@example.com, at most 254 characters.",
        pattern=EMAIL_PATTERN,
        max_length=EMAIL_MAX_LENGTH,
    ),
]
# Ids the broker made (broker.credentials.new_id: a prefix and 12 base32 letters): any lowercase
# alphanumerics are accepted so that ids stay opaque; none needs quoting in a URL, a shell or an
# ssh config.
SPACE_ID_BODY = r"sp_[a-z0-9]{1,32}"
SpaceId = Annotated[
    str, grammar_meta("a Space id", "A Space id is sp_ and up to 32 letters and digits.", pattern=whole(SPACE_ID_BODY))
]
SpaceKeyId = Annotated[
    str,
    grammar_meta(
        "a Space key id", "A Space key id is sk_ and up to 32 letters and digits.", pattern=whole("sk_[a-z0-9]{1,32}")
    ),
]
SshKeyId = Annotated[
    str,
    grammar_meta(
        "an SSH key id", "An SSH key id is key_ and up to 32 letters and digits.", pattern=whole("key_[a-z0-9]{1,32}")
    ),
]
AccessRequestId = Annotated[
    str,
    grammar_meta(
        "an access request id",
        "An access request id is req_ and up to 32 letters and digits.",
        pattern=whole("req_[a-z0-9]{1,32}"),
    ),
]

TokenTtl = Annotated[
    int,
    msgspec.Meta(
        # the broker's /openapi.json puts its own PAIR_BROKER_MAX_TOKEN_TTL in place of the marker
        extra_json_schema={"minimum": MIN_TOKEN_TTL, "x-maximum-setting": "PAIR_BROKER_MAX_TOKEN_TTL"},
        description="Seconds the token stays valid.",
    ),
]
InstanceId = Annotated[
    str,
    grammar_meta(
        "a container instance id", "A container's instance id is 1–128 characters.", min_length=1, max_length=128
    ),
]  # a container's random id

Role = Literal["owner", "shared"]
Port = Annotated[
    int, grammar_meta("a TCP port", "A port is a number from 1 to 65535.", ge=1, le=65535)
]  # RFC 793: 16 bits; 0 is no port
SpaceState = Literal["created", "starting", "running", "stopping", "stopped", "deleted"]
Platform = Literal["codespaces", "devfile", "devcontainer", "generic"]


# Every `code` the broker answers an error with: a closed set, for programs (the sentences are
# for people). docs/architecture.md ("Error codes") says what each means; a test holds the two and
# every Problem the broker raises to this list. A client reads `code` as a plain string, so one
# from a newer broker is not an error.
ErrorCode = Literal[
    # the request itself
    "bad_json",
    "bad_form",
    "invalid",
    "invalid_facts",
    "too_large",
    "unsupported_media_type",
    "disconnected",
    "not_found",
    "method_not_allowed",
    "http_error",
    # who is asking
    "unauthenticated",
    "bad_credentials",
    "forbidden",
    "not_owner",
    "csrf",
    "bad_origin",
    "link_invalid",
    # accounts and Spaces
    "exists",
    "unknown_user",
    "container_not_running",
    # teams: templates, quotas, access requests (docs/operations.md)
    "unknown_template",
    "quota_exceeded",
    "too_many_requests",
    "pending",
    "not_pending",
    "access_denied",
    "expired_token",
    # Space tokens and agents
    "token_malformed",
    "token_bad_signature",
    "token_unknown_key",
    "token_wrong_audience",
    "token_wrong_issuer",
    "token_not_yet_valid",
    "token_expired",
    "token_unknown",
    "token_used",
    "token_revoked",
    "space_deleted",
    "instance_mismatch",
    "agent_unauthenticated",
    # Space keys (a container registering itself with one)
    "space_key_malformed",
    "space_key_unknown",
    "space_key_revoked",
    "space_key_expired",
    # getting in (pair.api.readiness and the relay)
    "not_running",
    "ssh_down",
    "starting",
    "agent_reconnecting",
    "agent_not_connected",
    "agent_timeout",
    "agent_outdated",
    # shared ports
    "ports_off",
    "no_free_address",
    # streams (SSH, terminals, ports) once open, or refused by the agent
    "revoked",
    "target_not_allowed",
    "target_unreachable",
    # the broker itself
    "storage_unavailable",
    "unavailable",
    "internal",
]


class ErrorBody(Struct):
    message: str
    detail: str = ""
    code: str = ""  # an ErrorCode from this broker; any string from a newer one


class User(Struct):
    id: str
    email: str
    is_admin: bool
    created_at: datetime


class Teammate(Struct):
    email: str


class LoginRequest(Struct):
    email: Email  # a malformed one names no account: refused as bad input (422), not a bad key (401)
    auth_key: str
    client: str = ""


class LoginResponse(Struct):
    session_token: str
    expires_at: datetime
    user: User


class WebLink(Struct):
    """A one-time link that signs its opener in to the broker's web page as the caller."""

    url: str
    expires_at: datetime
    ttl_seconds: int  # how long it stays valid, so the CLI need not trust its own clock


class NewUserRequest(Struct):
    email: Email
    is_admin: bool = False


class UserWithKey(Struct):
    user: User
    auth_key: str


class SshKey(Struct):
    id: str
    fingerprint: str
    key_type: str
    bits: int
    comment: str
    created_at: datetime


class NewSshKeyRequest(Struct):
    public_key: Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 1})]  # one OpenSSH public key line


# What a container may say about itself: each fact's grammar is its type below, made by
# grammar_meta like every request field's, and pair.api.fields.check_facts checks a container's
# facts against them (refused with the type's sentence, 422 `invalid_facts`), at bootstrap,
# check-in and heartbeat; the agent leaves out a workspace folder that does not fit. Each value
# ends up in teammates' ssh configs, known_hosts files or terminals, so none needs quoting. In
# ContainerFacts they are stated for /openapi.json, not enforced when a message is decoded: the
# CLI leaves out one Space that breaks them rather than the whole list. Empty text is "not
# reported".
LOGIN_USER_BODY = r"[A-Za-z_][A-Za-z0-9._-]{0,31}"  # POSIX portable user names, Linux's 32 bytes
HOSTNAME_BODY = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}"  # RFC 1123, leniently (underscores, a final dot)
VERSION_BODY = r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}"  # PEP 440, local versions included
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
# One host key as `TYPE BASE64`: no comment, option, marker or second line. That the base64 is a
# key of its type is checked by pair.sshkeys, which JSON Schema cannot say.
HOST_KEY_BODY = rf"(?:{'|'.join(HOST_KEY_TYPES)}) [A-Za-z0-9+/]+={{0,2}}"
MAX_HOST_KEYS = 16
# The folder a container says its project is in (Codespaces' /workspaces/REPO, a Devfile's
# /projects), where terminals start: an absolute path on one line, without control, bidi or
# invisible format characters (pair.printable's list), at most 1024 characters.
WORKSPACE_FOLDER_BODY = r"/[^\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]{0,1023}"
MAX_CPUS = 1 << 16
MAX_BYTES = (1 << 63) - 1

LoginUser = Annotated[
    str,
    grammar_meta(
        "a POSIX user name",
        "The login user is a letter or '_', then up to 31 letters, digits, '.', '_' or '-'; set PAIR_SSH_USER "
        "(or install.sh --ssh-user) to one such as vscode.",
        pattern=whole(f"(?:{LOGIN_USER_BODY})?"),
    ),
]
HostName = Annotated[
    str,
    grammar_meta(
        "a host name",
        "A container's host name is up to 253 letters, digits, '.', '_' or '-', starting with a letter, digit or '_' "
        "(RFC 1123).",
        pattern=whole(f"(?:{HOSTNAME_BODY})?"),
    ),
]
PairVersion = Annotated[
    str,
    grammar_meta(
        "a version",
        "A pair version is up to 64 letters, digits, '.', '+', '!', '_' or '-', starting with a letter or digit "
        "(PEP 440).",
        pattern=whole(f"(?:{VERSION_BODY})?"),
    ),
]
WorkspaceFolder = Annotated[
    str,
    grammar_meta(
        "an absolute path",
        "A workspace folder is an absolute path on one line of at most 1024 characters, without control, "
        "bidirectional or invisible formatting characters.",
        pattern=whole(f"(?:{WORKSPACE_FOLDER_BODY})?"),
    ),
]
HostKey = Annotated[
    str,
    grammar_meta(
        "an SSH host key",
        f"A host key is `TYPE BASE64` as sshd's .pub file starts, TYPE one of {', '.join(HOST_KEY_TYPES)}; "
        "one key per entry, without a comment.",
        pattern=whole(HOST_KEY_BODY),
    ),
]
HostKeys = Annotated[
    list[HostKey],
    grammar_meta(
        "a list of host keys", f"A container reports at most {MAX_HOST_KEYS} host keys.", max_length=MAX_HOST_KEYS
    ),
]
CpuCount = Annotated[
    float,
    grammar_meta("a CPU count", f"A CPU count is a number from 0 to {MAX_CPUS}.", ge=0, le=MAX_CPUS),
]
Bytes = Annotated[
    int,
    grammar_meta("a number of bytes", f"A size in bytes is a whole number from 0 to {MAX_BYTES}.", ge=0, le=MAX_BYTES),
]
# The fact types checked as they are (check_facts), by field; the rest are enforced when decoded.
FACT_GRAMMAR: dict[str, object] = {
    "login_user": LoginUser,
    "host_keys": HostKeys,
    "hostname": HostName,
    "pair_version": PairVersion,
    "workspace_folder": WorkspaceFolder,
    "cpus": CpuCount,
    "memory_bytes": Bytes,
    "disk_bytes": Bytes,
}


def _stated(kind: object) -> msgspec.Meta:
    """A fact type's grammar (`kind`: LoginUser…; a list's HostKeys gives its maxItems) as
    /openapi.json states it for ContainerFacts, not enforced when decoded."""
    meta = get_args(kind)[1]
    schema: dict[str, object] = {"pattern": meta.pattern} if meta.pattern else {}
    if meta.max_length is not None:
        schema["maxItems"] = meta.max_length
    return msgspec.Meta(extra_json_schema=schema, description=meta.description)


class ContainerFacts(Struct):
    hostname: Annotated[str, _stated(HostName)] = ""
    platform: Platform = "generic"
    cpus: CpuCount = 0
    memory_bytes: Bytes = 0
    disk_bytes: Bytes = 0
    login_user: Annotated[str, _stated(LoginUser)] = ""
    host_keys: Annotated[list[Annotated[str, _stated(HostKey)]], _stated(HostKeys)] = msgspec.field(
        default_factory=list
    )
    pair_version: Annotated[str, _stated(PairVersion)] = ""
    workspace_folder: Annotated[str, _stated(WorkspaceFolder)] = ""


# Text a container reports for people to read: one line, no control or bidi-override characters
# (they would reach terminals and pages), bounded. The broker refuses anything else on entry.
# `(?![\s\S])` is "end of text" in Python's and ECMAScript's regexes alike (`$` also matches
# before a final newline in Python's).
END = r"(?![\s\S])"
ShortText = Annotated[
    str,
    grammar_meta(
        "a short line of text",
        "Such text is one line of at most 300 characters, without control characters or bidirectional overrides.",
        max_length=300,
        pattern=r"^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*" + END,
    ),
]


class SshHealth(Struct):
    """Whether the Space's sshd answers SSH, as its agent sees it, and why not.

    The agent reports it with each heartbeat and at once when it changes. `serving` means a TCP
    connection to the sshd port inside the container got an `SSH-2.0-` banner (RFC 4253 4.2)
    while supervisord (when it runs sshd) reports the program RUNNING."""

    serving: bool
    reason: ShortText = ""  # one sentence when not serving, e.g. "sshd could not start: …"
    # supervisord's name for the sshd program's state (STARTING, RUNNING, BACKOFF, STOPPED,
    # EXITED, FATAL, …); "" when sshd does not run under supervisord.
    supervisor_state: Annotated[
        str,
        grammar_meta(
            "a supervisord state", "A supervisord state is up to 16 capital letters.", pattern="^[A-Z]{0,16}" + END
        ),
    ] = ""

    @property
    def settling(self) -> bool:
        """True while supervisord is still starting sshd: not served yet, but not failed either."""
        return not self.serving and self.supervisor_state == "STARTING"


class Space(Struct):
    id: str
    name: str
    owner: str
    role: Role
    state: SpaceState
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = None
    container: ContainerFacts | None = None
    # What the container's agent last reported about SSH (absent before it reported, from
    # agents older than this field, and while the Space is stopped).
    ssh: SshHealth | None = None
    # Only the owner sees who else has access.
    shared_with: list[str] | None = None
    shared_with_groups: list[str] | None = None  # group names; the owner's, like shared_with
    template: str | None = None  # the template it was made from (None: made without one)
    compute_units: int = 0  # what it uses of its owner's quota while starting or running
    storage_units: int = 0  # what it uses of its owner's quota while it exists
    # Bytes both ways through the relay in the last 24 h: connections that ended then (the
    # connection log) and those open now. Only in lists (`GET /spaces`); 0 elsewhere.
    net_bytes: int = 0


class AuthorizeRequest(Struct):
    name: SpaceName | None = None
    template: TemplateName | None = None  # None: the broker's default template (if it has templates)
    share_with: list[Email] = msgspec.field(default_factory=list)
    ttl_seconds: TokenTtl | None = None


class NewTokenRequest(Struct):
    ttl_seconds: TokenTtl | None = None


class SpaceToken(Struct):
    space: Space
    token: str
    expires_at: datetime
    ttl_seconds: int


SpaceKeyState = Literal["active", "expired", "revoked"]


# A Space key's lifetime: at least a minute, at most ten years (a bound the store's 64-bit times
# and datetimes hold). The CLI checks a typed --expires against these (pair.cli.space_keys.expiry).
SPACE_KEY_MIN_SECONDS = 60
SPACE_KEY_MAX_SECONDS = 10 * 366 * 86400
# A key made without a lifetime lives 90 days, as Codespaces' and Tailscale's auth keys do: the
# broker decodes an absent field to this, so every client (the CLI, a script calling the API) gets it.
SPACE_KEY_DEFAULT_SECONDS = 90 * 86400


class NewSpaceKeyRequest(Struct):
    name: SpaceKeyName
    share_with: list[Email] = msgspec.field(default_factory=list)
    # Absent: SPACE_KEY_DEFAULT_SECONDS (90 days); null: never expires (`--expires never`).
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=SPACE_KEY_MIN_SECONDS, le=SPACE_KEY_MAX_SECONDS)] | None = (
        SPACE_KEY_DEFAULT_SECONDS
    )
    # The template every Space it registers is made from; None: the broker's default at each registration
    template: TemplateName | None = None


class SpaceKey(Struct):
    """A reusable Space key as its owner sees it (never its secret, which the broker keeps hashed)."""

    id: str
    name: str
    state: SpaceKeyState
    share_with: list[str]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    uses: int = 0  # containers registered with it
    last_used_at: datetime | None = None
    spaces: list[str] = msgspec.field(default_factory=list)  # names of the live Spaces it made
    template: str | None = None  # what its Spaces are made from; None: the broker's default then
    # The broker no longer has `template`: a container registering a new Space with the key is
    # refused (409 unknown_template) until a template of that name is added again.
    template_removed: bool = False


class NewSpaceKey(Struct):
    key: SpaceKey
    space_key: str  # the secret, shown this once


class RevokeSpaceKeyRequest(Struct):
    delete_spaces: bool = False  # also delete the Spaces the key made


class RevokedSpaceKey(Struct):
    key: SpaceKey
    deleted_spaces: list[str] = msgspec.field(default_factory=list)


class ShareUpdate(Struct):
    add: list[Email] = msgspec.field(default_factory=list)
    remove: list[Email] = msgspec.field(default_factory=list)
    add_groups: list[GroupName] = msgspec.field(default_factory=list)
    remove_groups: list[GroupName] = msgspec.field(default_factory=list)


# One line a terminal prints as it is: none of the characters pair.printable escapes (C0, DEL, C1,
# bidi and invisible format characters, line and paragraph separators).
TEMPLATE_DESCRIPTION_BODY = r"[^\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff]{0,200}"
TemplateDescription = Annotated[
    str,
    grammar_meta(
        "a valid template description",
        "A template's description is one line of at most 200 printable characters.",
        max_length=200,
        pattern=whole(TEMPLATE_DESCRIPTION_BODY),
    ),
]
Units = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
QuotaResource = Literal["spaces", "compute", "storage"]


class Template(Struct):
    """What a Space made from it costs (seed 001: compute units while it runs, storage units
    while it exists)."""

    name: TemplateName
    compute_units: Units
    storage_units: Units
    description: TemplateDescription = ""
    is_default: bool = False


Limit = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]


class Limits(Struct):
    """A user's or a group's own limits; null is unset (see `Quota` for how they add up)."""

    spaces: Limit | None = None
    compute: Limit | None = None
    storage: Limit | None = None


class Group(Struct):
    name: GroupName
    members: list[str]  # emails, sorted
    quota: Limits
    created_at: datetime


class NewGroupRequest(Struct):
    name: GroupName


class GroupMembersUpdate(Struct):
    add: list[Email] = msgspec.field(default_factory=list)
    remove: list[Email] = msgspec.field(default_factory=list)


class QuotaSource(Struct):
    """One limit that adds to a person's quota: their own (`kind` user) or a group's."""

    kind: Literal["user", "group"]
    name: str  # the email or the group's name
    limit: int


# How people read each resource, in refusals ("You are using 9 of 10 compute units") and quotas.
QUOTA_RESOURCE_NAMES: dict[QuotaResource, str] = {
    "spaces": "Spaces",
    "compute": "compute units",
    "storage": "storage units",
}


class QuotaLine(Struct):
    """One limit of a person's, its usage, and the limits it adds up from. Its methods are the
    one wording of a quota, shared by `pair quota`, `pair-broker quota show` and the web pages."""

    resource: QuotaResource
    limit: int | None  # None: unlimited (nobody sets it)
    used: int
    sources: list[QuotaSource] = msgspec.field(default_factory=list)

    def limit_text(self) -> str:
        """`10`, or `unlimited`."""
        return "unlimited" if self.limit is None else str(self.limit)

    def origin(self) -> str:
        """Where the limit comes from (seed 001: the person's own plus each group's):
        `4 (own) + 6 (group eng)`, or `nobody sets it`. The same words whoever reads them: the
        person (`pair quota`, the Spaces page) and an admin (`pair-broker quota show`, the admin page)."""
        if not self.sources:
            return "nobody sets it"
        return " + ".join(f"{s.limit} ({'own' if s.kind == 'user' else 'group ' + s.name})" for s in self.sources)

    def usage(self) -> str:
        """`2 of 10 = 4 (own) + 6 (group eng)`; `1 of unlimited (nobody sets it)`: the line
        without the resource's name, for where a column or a heading says it."""
        used = f"{self.used} of {self.limit_text()}"
        return f"{used} = {self.origin()}" if self.sources else f"{used} ({self.origin()})"

    def summary(self) -> str:
        """`compute units 2 of 10 = 4 (own) + 6 (group eng)`; `Spaces 1 of unlimited (nobody sets it)`."""
        return f"{QUOTA_RESOURCE_NAMES[self.resource]} {self.usage()}"


class Quota(Struct):
    """A person's limits, where each comes from, and what their Spaces use now."""

    email: str
    lines: list[QuotaLine]


class BootstrapRequest(Struct):
    token: str
    instance_id: InstanceId
    facts: ContainerFacts


class KeyBootstrapRequest(Struct):
    """A container that registers itself as its own Space with a reusable Space key."""

    space_key: str
    # The Space's name as the container asks for it: CODESPACE_NAME, DEVWORKSPACE_NAME or the
    # host name, made to fit the name rule (pair.api.grammar.space_name_from); made unique among
    # the owner's Spaces (`-2`) by the broker.
    container_name: SpaceName
    instance_id: InstanceId
    facts: ContainerFacts
    # SHA-256 (hex) of the raw name container_name was made from (pair.api.grammar.container_digest):
    # what tells two containers apart whose names clean to one Space name. Absent from pair
    # before 2026-11-30: the Space name is then the identity.
    container_digest: ContainerDigest | None = None


ContainerDigest = Annotated[
    str,
    grammar_meta(
        "a container digest", "A container digest is 64 lowercase hex digits (SHA-256).", pattern=whole("[0-9a-f]{64}")
    ),
]


class RegistrationCheck(Struct):
    """Would this Space token or key register a container now? install.sh asks before it installs
    anything (a dead secret is refused at once, not after the install). Nothing is used, made or
    recorded: the answer is the bootstrap's own refusal (the same status, code and sentence), or
    what the container would become."""

    kind: Literal["space_token", "space_key"]
    secret: str  # as pasted: the broker normalizes it as bootstrap does (pair.api.tokens)
    # The container's instance id ($PAIR_HOME/instance-id), if it has one: a token it used itself
    # still registers it (bootstrap takes a retry from the same container).
    instance_id: InstanceId | None = None


class RegistrationCheckResult(Struct):
    """What a container that bootstraps with the secret would become, once it does."""

    owner: str  # the email of the Space's owner (a token's Space's, or the key's)
    space_name: str | None = None  # a token: its Space
    space_key_name: str | None = None  # a key: its name (each container becomes a Space of its own)


class AgentCheckin(Struct):
    instance_id: InstanceId
    facts: ContainerFacts


class AgentRegistration(Struct):
    space_id: str
    space_name: str
    owner: str
    state: SpaceState
    # Present only in the bootstrap response: the opaque credential the agent keeps (0600).
    agent_credential: str = ""


class AuthorizedKey(Struct):
    """One key that may log in to the Space, and whose it is."""

    key: str  # "<type> <base64>", as in authorized_keys
    fingerprint: str
    email: str
    role: Role


class AuthorizedKeys(Struct):
    """Who may log in to a Space: the snapshot `pair agent` keeps and `pair verify` reads."""

    version: str  # changes whenever the content does
    login_user: str
    keys: list[AuthorizedKey]


# What an agent reports. running: sshd is meant to serve (`Heartbeat.ssh` says whether it does);
# stopped: sshd stopped as the owner asked (down); stopping: the agent exits.
ReportedState = Literal["running", "stopped", "stopping"]


class Heartbeat(Struct):
    instance_id: InstanceId
    state: ReportedState = "running"
    keys_version: str = ""  # the snapshot the agent has; the reply carries a new one if it differs
    facts: ContainerFacts | None = None
    ssh: SshHealth | None = None  # absent from agents older than this field
    # On the control channel: the stream targets this agent can dial (`STREAM_TARGETS`' kinds),
    # said in the first heartbeat of each channel and absent after it. An agent that never says
    # it predates streams and understands only `tunnel` (SSH). Unknown kinds are ignored.
    streams: list[str] | None = None
    # TCP ports listening in the container on loopback or every address (/proc/net/tcp and tcp6,
    # as Codespaces detects them), less sshd's: candidates to share, never shared by this alone.
    # Absent from agents older than this field.
    listening: list[Port] | None = None
    # The Space's open terminals (who started each, who is attached and how), from agents that
    # list `pty`; sent in every heartbeat, and at once when one opens, ends, or someone attaches,
    # leaves or changes role. The broker keeps the latest list in memory (the Spaces page, `pair
    # spaces terminals`). Absent from agents older than this field.
    terminals: list[TerminalInfo] | None = None
    # The role changes the agent carried out since its last heartbeat, oldest first: each a
    # starter's grant that changed who may type (a refused grant, or one that changed nothing, is
    # none), sent at once on the control channel. The broker audits each (`terminal.role`).
    # Absent when there are none, and from agents older than this field.
    roles: list[TerminalRoleChange] | None = None


class HeartbeatReply(Struct):
    space_id: str
    space_name: str
    desired_state: Literal["running", "stopped"]
    interval_seconds: float
    snapshot_max_age: int  # seconds a snapshot may be trusted without a fresh heartbeat
    authorized_keys: AuthorizedKeys | None = None
    # The owner just asked for SSH (`pair spaces up`): start sshd even if it failed before.
    start_ssh: bool = False
    # Seconds a terminal nobody is attached to lives before its shell is hung up
    # (PAIR_BROKER_TERMINAL_IDLE); absent from brokers older than this field (the agent keeps 300).
    terminal_idle_seconds: Annotated[float, msgspec.Meta(gt=0)] | None = None


# -- the agent's control channel (a WebSocket; one JSON text frame per message) ---------------


class HeartbeatMessage(Struct, tag="heartbeat", tag_field="type"):
    """agent → broker, every interval: the same body as the HTTP heartbeat."""

    heartbeat: Heartbeat


class ReplyMessage(Struct, tag="reply", tag_field="type"):
    """broker → agent: answers a heartbeat, or is pushed when keys or the desired state change."""

    reply: HeartbeatReply


class TunnelRequest(Struct, tag="tunnel", tag_field="type"):
    """broker → agent, to agents that predate streams (their heartbeats name no `streams`): dial
    the local sshd and connect it to the broker's stream `tunnel_id` (at AGENT_TUNNEL). The tag and the
    field keep the word "tunnel": they are what those agents decode."""

    tunnel_id: str


# What a stream reaches in the container. The agent maps each kind to a dialer through its
# allow-list (pair.container.streams): the broker names a target, never an address.


class SshTarget(Struct, tag="ssh", tag_field="kind"):
    """The Space's sshd (the agent's SSH port)."""


class PtyTarget(Struct, tag="pty", tag_field="kind"):
    """A terminal: a new one, or one to join (pair.api.terminal). The stream then speaks the
    terminal protocol: binary frames are terminal bytes, text frames its JSON messages."""

    terminal: TerminalTarget


class TcpTarget(Struct, tag="tcp", tag_field="kind"):
    """127.0.0.1:PORT in the container, as raw bytes. The agent refuses ports outside 1..65535,
    and its own ports and sshd's unless `shared` (the owner shared that port on purpose)."""

    port: int  # checked by the agent's allow-list, which answers out-of-range ports with a sentence
    shared: bool = False


StreamTarget = SshTarget | PtyTarget | TcpTarget
STREAM_TARGETS = ("ssh", "pty", "tcp")  # every target kind, as an agent lists them in `Heartbeat.streams`

StreamKind = Literal["ssh", "terminal", "port"]  # how the connection log and `sessions` name a stream
StreamId = Annotated[
    str,
    grammar_meta(
        "a stream id", "A stream id is 3 letters, _ and 12 base32 letters.", pattern=whole("[a-z]{3}_[a-z2-7]{12}")
    ),
]


class StreamRequest(Struct, tag="stream", tag_field="type"):
    """broker → agent: open a stream to `target` and connect it to the broker's stream
    `stream_id` (at AGENT_STREAM). Sent only to agents whose heartbeat listed the target's kind."""

    stream_id: StreamId
    target: StreamTarget


class EndTerminals(Struct, tag="end_terminals", tag_field="type"):
    """broker → agent: these people's access ended (unshare, kick), or everyone's (`emails` null:
    down, delete). Their attachments close with `reason` (`revoked`), their grants go, and the
    terminals they started end. Sent only to agents that listed `pty`. `kicked`: the owner ended
    their streams (`pair spaces kick`), their access goes on: the others are told so."""

    emails: list[str] | None
    reason: str
    kicked: bool = False


BrokerMessage = ReplyMessage | TunnelRequest | StreamRequest | EndTerminals


RefusalCode = Literal["not_allowed", "unreachable"]


class StreamRefused(Struct, tag="refused", tag_field="type"):
    """agent → broker, answering a `stream` request it will not or cannot open (not for `tunnel`:
    brokers that send those do not know this message). `message` is one sentence for the person,
    e.g. "port 8080 in the container is not reachable (Connection refused)."; `code` is for
    programs: `not_allowed` (the allow-list refused the target), `unreachable` (nothing answered)."""

    stream_id: StreamId
    message: ShortText
    code: RefusalCode


AgentMessage = HeartbeatMessage | StreamRefused


class StreamInfo(Struct):
    """One stream through the relay (an SSH connection, a terminal, a port), open or closed."""

    id: str
    space_id: str
    email: str
    client_address: str
    opened_at: datetime
    closed_at: datetime | None = None
    bytes_in: int = 0  # from the person to the container
    bytes_out: int = 0  # from the container to the person
    close_reason: str = ""
    kind: StreamKind = "ssh"  # brokers older than streams relayed SSH only


# -- shared ports (issue 12) ------------------------------------------------------------------

# Who may open a shared port's URL: the owner; the owner and the people the Space is shared with;
# anyone signed in to this broker; anyone at all.
PortLevel = Literal["owner", "shared", "authenticated", "public"]
PORT_LEVELS: tuple[PortLevel, ...] = ("owner", "shared", "authenticated", "public")  # narrowest first
PORT_LABEL_PATTERN = whole(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]{0,80}")  # one line of printable text
PortLabel = Annotated[
    str,
    grammar_meta(
        "a port label",
        "A port's label is one line of at most 80 characters of visible text: no control, bidirectional"
        " or invisible formatting characters.",
        max_length=80,
        pattern=PORT_LABEL_PATTERN,
    ),
]


class PortShare(Struct):
    """Share a port, or change how: `level` and `label` left out keep what they were (a new share
    is `owner` and unlabelled)."""

    level: PortLevel | None = None
    label: PortLabel | None = None


class SharedPort(Struct):
    """A port a Space shares, at its own origin `url` (`PORT--SPACE--OWNER.<apps domain>`)."""

    space_id: str
    port: Port
    level: PortLevel
    label: str
    url: str
    shared_at: datetime


class SpacePorts(Struct):
    """A Space's shared ports, and the ports listening in its container (the owner's candidates)."""

    space_id: str
    enabled: bool  # the broker has an apps domain; if not, `reason` says so
    reason: str = ""
    shared: list[SharedPort] = msgspec.field(default_factory=list)
    listening: list[Port] = msgspec.field(default_factory=list)  # the owner's view only


class Health(Struct):
    status: str
    version: str


class SpaceTokenClaims(Struct):
    """The Space token's JWT claims (RFC 7519). It names a Space and nothing else: no secret, no people."""

    iss: str
    aud: str
    sub: str
    iat: int
    nbf: int
    exp: int
    jti: str


# -- access requests: a device-flow hand-off (RFC 8628 vocabulary) ----------------------------

AccessRequestState = Literal["pending", "approved", "claimed", "denied"]
RequestMessage = Annotated[
    str,
    grammar_meta(
        "a valid message",
        "A message is at most 500 characters, without control characters (tab and newline are fine)"
        " or bidirectional overrides, which make text read other than it shows.",
        max_length=500,
        pattern=r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*" + END,
    ),
]


class NewAccessRequest(Struct):
    email: Email
    message: RequestMessage = ""  # for the admins: who you are, why


class DeviceAuthorization(Struct):
    """RFC 8628 3.2: the device code the CLI keeps (a secret) and polls with."""

    request_id: str
    device_code: str
    expires_in: int  # seconds
    interval: int  # seconds between polls


class DeviceTokenRequest(Struct):
    device_code: str


class DeviceToken(Struct):
    """A poll's answer (RFC 8628 3.5): still `authorization_pending`, `slow_down` (wait
    `interval`, now longer), or `approved` with the new account's session. A denial is 403
    `access_denied`, an expired or used code 410 `expired_token`."""

    status: Literal["authorization_pending", "slow_down", "approved"]
    interval: int
    session_token: str = ""
    expires_at: datetime | None = None
    user: User | None = None
    space: str = ""  # the name of the Space made for them


class AccessRequest(Struct):
    id: str
    email: str
    message: str
    state: AccessRequestState
    created_at: datetime
    expires_at: datetime
    decided_by: str = ""
    space: str = ""  # the Space made on approval (its id)
