"""The terminal wire protocol: what flows on a terminal stream, and what opens one.

A terminal stream is one WebSocket per person per terminal (the page's, or the CLI's), spliced by
the broker to a stream the agent opens to its PTY target (docs/architecture.md, "Terminals: the
agent side"). Frames keep their kind end to end:

- **binary frames** are terminal bytes: keystrokes from the person to the shell, the shell's
  output to the person. Input from a viewer is dropped by the agent.
- **text frames** are one JSON object each, tagged by `"type"`.

person → agent (`ClientMessage`):

- `resize {cols, rows}` (each 1..1000): my window's size. From a driver it becomes the
  terminal's (the latest driver's size wins); a viewer's is ignored.
- `grant {email, role}`: the starter makes a person a driver, or a viewer again; anyone else's
  grant is answered `error` (`forbidden`), one whose email is not an address (pair.api.grammar)
  `error` (`bad_message`) by the agent, and a close with 4422 by the broker it passes.

agent → person (`ServerMessage`):

- `hello {terminal_id, email, role, started_by, started_at, cols, rows, control}`: first, on
  attaching; the scrollback follows as binary frames, then live output — except on a
  control-only attach (`control`, asked by `join … control`), which gets no output, only
  answers to what it sends.
- `attached {people: [{email, role, since}]}`: after `hello`, and whenever someone attaches,
  leaves, or changes role.
- `role {role}`: your role changed (the starter granted or took back the keyboard).
- `size {cols, rows}`: the terminal's size changed (a viewer's page shows it at that size).
- `error {message, code}`: a request of yours was refused (`forbidden`, `bad_message`, or
  `busy`: too many role changes wait for the broker's audit, try again in a moment); the
  stream goes on.
- `exit {status, signal}`: the shell ended (`status` as a shell reports it: 128+N for signal N,
  whose name is `signal`); nothing follows.
- `closed {reason, code}`: the stream ends for another reason (`CLOSE_CODES`); `reason` is one
  sentence for people, e.g. "alice@example.com's access to this Space ended…"; nothing follows.

broker → agent, when it asks for a stream to a PTY target (`TerminalTarget`): `open` (a new
terminal, started by `email`, at `cols`×`rows`) or `join` (an existing `terminal_id`, as `email`,
`read_only` or with the role the starter granted, or `control` only). `TerminalInfo` is one open terminal as the
agent lists it (who started it, who is attached and how).

Sizes are bounded here, so a decoded message is already in range; emails are bounded in length
only here: the broker authenticated those of `open` and `join`, and a grant's is checked against
pair.api.grammar where it passes the broker and where it arrives at the agent (this module cannot
import the grammar, which imports the models that import it). Limits: `MAX_CONTROL_BYTES` per text frame,
`MAX_INPUT_BYTES` per binary frame from a person (the page splits pastes below it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from pair.api.closecodes import TRANSIENT, TRANSIENT_RANGE
from pair.api.wire import Struct, grammar_meta

Role = Literal["driver", "viewer"]
Dimension = Annotated[
    int, grammar_meta("a terminal size", "A terminal's columns and rows are each from 1 to 1000.", ge=1, le=1000)
]
# The agent's ids: `term_` and 60 random bits in base32. `(?!\n)`: Python's `$` also matches before
# a final newline (pair.api.models.whole).
TERMINAL_ID_PATTERN: Final = r"^term_[a-z2-7]{12}$(?!\n)"
TerminalId = Annotated[
    str,
    grammar_meta("a terminal id", "A terminal id is term_ and 12 letters and digits.", pattern=TERMINAL_ID_PATTERN),
]
Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320)]

MAX_CONTROL_BYTES: Final = 4 * 1024
MAX_INPUT_BYTES: Final = 64 * 1024

# `closed.code`: why a stream ended, for programs (the reason is for people).
CLOSE_CODES: Final = {
    "revoked": "the person's access to the Space ended (unshare, kick, delete, down)",
    "ended": "the terminal was ended (by its starter, or the Space stopped)",
    "idle": "nobody was attached for the idle limit",
    "not_found": "no such terminal (it ended, or never existed)",
    "limit": "the Space has as many terminals as it may",
    "spawn_failed": "the shell could not be started",
    "too_slow": "the person's connection fell too far behind the output",
    "too_large": "a message was larger than the protocol allows",
    "bad_message": "a text frame was not a message of this protocol",
    "agent_stopping": "the container's agent is stopping",
}
# `closed.code`s after which the terminal goes on and the person may join it again at once (and
# catch up from its scrollback); every other one is final.
REJOINABLE: Final = frozenset({"too_slow"})

# A client joining its terminal again after a drop waits BACKOFF_FIRST seconds, doubling up to
# BACKOFF_MAX, each wait times a random 0.5-1 ("equal jitter"): the CLI and the web page alike.
BACKOFF_FIRST: Final = 0.5
BACKOFF_MAX: Final = 10.0


def reconnect_rule() -> dict[str, object]:
    """The reconnect rule as JSON-ready data, for the web page (the terminal page renders it in a
    data attribute and terminal.js follows it), so the page and the CLI decide alike:
    `{"transient": [close codes], "transient_range": [4500, 4599], "rejoinable": [closed codes],
    "backoff_first_ms": 500, "backoff_max_ms": 10000}` (pair.api.closecodes.transient)."""
    return {
        "transient": sorted(int(code) for code in TRANSIENT),
        "transient_range": list(TRANSIENT_RANGE),
        "rejoinable": sorted(REJOINABLE),
        "backoff_first_ms": int(BACKOFF_FIRST * 1000),
        "backoff_max_ms": int(BACKOFF_MAX * 1000),
    }


# -- person → agent -------------------------------------------------------------------------


class Resize(Struct, tag="resize", tag_field="type"):
    cols: Dimension
    rows: Dimension


class Grant(Struct, tag="grant", tag_field="type"):
    email: Email
    role: Role


ClientMessage = Resize | Grant


# -- agent → person -------------------------------------------------------------------------


class Person(Struct):
    """Someone attached to a terminal (a person with two tabs open is listed once per tab)."""

    email: str
    role: Role
    since: datetime


class Hello(Struct, tag="hello", tag_field="type"):
    terminal_id: str
    email: str  # who this stream is for
    role: Role
    started_by: str
    started_at: datetime
    cols: int
    rows: int
    control: bool = False  # a control-only attachment (`JoinTerminal.control`): no output follows


class Attached(Struct, tag="attached", tag_field="type"):
    people: list[Person]


class RoleChanged(Struct, tag="role", tag_field="type"):
    role: Role


class SizeChanged(Struct, tag="size", tag_field="type"):
    cols: int
    rows: int


class Refused(Struct, tag="error", tag_field="type"):
    message: str
    code: str


class Exited(Struct, tag="exit", tag_field="type"):
    status: int
    signal: str = ""  # e.g. "SIGHUP" when a signal ended the shell


class Closed(Struct, tag="closed", tag_field="type"):
    reason: str
    code: str


ServerMessage = Hello | Attached | RoleChanged | SizeChanged | Refused | Exited | Closed


# -- broker → agent: the PTY target of a stream ----------------------------------------------


class OpenTerminal(Struct, tag="open", tag_field="type"):
    """Start a new terminal; `email` (the person asking) is its starter and always a driver."""

    email: Email
    cols: Dimension = 80
    rows: Dimension = 24


class JoinTerminal(Struct, tag="join", tag_field="type"):
    """Attach to a running terminal: as a viewer, or as a driver if the starter granted it."""

    terminal_id: TerminalId
    email: Email
    read_only: bool = False  # stay a viewer even if granted the keyboard
    cols: Dimension | None = None  # a driver's window size, applied on joining
    rows: Dimension | None = None
    # A control-only attach (`pair spaces terminal-role`, to change a role): `hello` and answers to
    # control messages, no scrollback or output, not one of the people attached, no join audited.
    control: bool = False


TerminalTarget = OpenTerminal | JoinTerminal


class RoleChange(Struct):
    """A change in who may type that the agent carried out: `by` (the terminal's starter) made
    `email` a driver or a viewer again in `terminal_id`. Agents report them in heartbeats
    (`Heartbeat.roles`); the broker audits each."""

    terminal_id: str
    email: str
    role: Role
    by: str


class TerminalInfo(Struct):
    """One open terminal, for listings (`pair spaces terminals`, the Spaces page)."""

    id: str
    started_by: str
    started_at: datetime
    cols: int
    rows: int
    drivers: list[str]  # who may type (the starter first), attached or not
    people: list[Person]  # who is attached now


# -- encoding -------------------------------------------------------------------------------

_client_decoder = msgspec.json.Decoder(ClientMessage)
_server_decoder = msgspec.json.Decoder(ServerMessage)
_target_decoder = msgspec.json.Decoder(TerminalTarget)
_encoder = msgspec.json.Encoder()


def encode(message: ClientMessage | ServerMessage | TerminalTarget) -> str:
    """One text frame's JSON."""
    return _encoder.encode(message).decode()


def decode_client(text: str | bytes) -> ClientMessage:
    """A person's text frame. Raises msgspec.ValidationError or msgspec.DecodeError (both
    msgspec.MsgspecError) when it is not a message of this protocol or a value is out of range."""
    return _client_decoder.decode(text)


def decode_server(text: str | bytes) -> ServerMessage:
    """An agent's text frame, as a client (the CLI) reads it. Raises msgspec.MsgspecError."""
    return _server_decoder.decode(text)


def decode_target(text: str | bytes) -> TerminalTarget:
    """The broker's description of a PTY target. Raises msgspec.MsgspecError."""
    return _target_decoder.decode(text)
