"""What the broker judges and records of terminals (issue 11), beyond the stream they ride on
(broker.streams): who may list them, the person's messages it lets pass, and the audit log,
written from the agent's word rather than from what a person asked for.

- **A grant's email** is a person's text on its way to the container: checked against
  pair.api.grammar as it passes the broker (`refusal`; the splice closes the stream with 4422
  and the sentence), and again by the agent where it arrives. A grant to someone who cannot
  reach the Space (no user, or one it is not shared with: broker.access.may_reach) is answered
  `error {forbidden}` by the broker and never reaches the agent (`grant_answer`), so a starter
  cannot hand the keyboard to a person ahead of a share; nothing is audited of it.
- **Opening and joining** are audited once the agent's first message, `hello`, names the
  terminal (`hello`, read by broker.streams.open_stream): a join to a terminal that does not
  exist is answered `closed {not_found}` by the agent instead, and is no join.
- **Role changes** are audited from the agent's report of what it carried out (`roles_changed`,
  from its heartbeats' `roles`, sent at once): a grant the agent refused, or one that changed
  nothing, is not reported, so a flood of them writes nothing and the rows are as many as the
  real changes. An ended access (unshare, kick) drops that person's grants without a report: the
  unshare or kick is the row.

Emails and terminal ids reach the audit log as they are when they fit their grammar, else quoted
and escaped (`audit_email`, `audit_terminal_id`): what an agent reports is a container's text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import msgspec

from broker import access
from broker.context import Context
from broker.links import Frame
from broker.store import UserRecord
from pair.api import grammar
from pair.api import terminal as tp

log = logging.getLogger("pair.broker")

TERMINAL_ID_RE = re.compile(tp.TERMINAL_ID_PATTERN)
BAD_GRANT = "A grant named someone by a text that is not an email address (name@example.com)."
MAX_ROLE_ROWS = 100  # audit rows from one heartbeat; more than this is a container misbehaving


async def listing(ctx: Context, user: UserRecord, space_id: str) -> list[tp.TerminalInfo]:
    """The open terminals of a Space `user` owns or that is shared with them (who started each,
    who is attached and how), as its agent last reported them: none while it is not connected.
    Raises Problem 404 for a Space `user` cannot see."""
    space = await access.get_visible(ctx, user, space_id)
    return (await ctx.agent_report(space.id)).terminals


def refusal(text: str) -> str | None:
    """Why the broker refuses a person's text frame on a terminal stream (one sentence, short
    enough for a close reason), or None to pass it on: a `grant` whose email is not an address
    (pair.api.grammar). What is not a message of the protocol passes: the agent answers it."""
    try:
        message = tp.decode_client(text)
    except msgspec.MsgspecError:
        return None
    if isinstance(message, tp.Grant) and not grammar.is_email(message.email):
        return BAD_GRANT
    return None


def no_reach(email: str) -> str:
    """Why a grant to `email` (an address) is refused: the person cannot reach the Space."""
    return f"{email} cannot reach this Space, so they cannot be given the keyboard; share the Space with them first."


async def grant_answer(ctx: Context, space_id: str, text: str) -> str | None:
    """The broker's answer (an `error {forbidden}` frame for the person) to a text frame that
    grants a role to someone who cannot reach `space_id` (broker.access.may_reach), which is
    not passed on; None to pass the frame on. Runs after `refusal`, so a grant's email is an
    address here."""
    try:
        message = tp.decode_client(text)
    except msgspec.MsgspecError:
        return None
    if not isinstance(message, tp.Grant) or not grammar.is_email(message.email):
        return None
    if await access.may_reach(ctx, space_id, message.email):
        return None
    return tp.encode(tp.Refused(message=no_reach(message.email.lower()), code="forbidden"))


def hello(frame: Frame) -> tp.Hello | None:
    """The agent's `hello` if `frame` (its first on a terminal stream) is one, with a terminal id
    of the protocol's grammar; None for anything else (`closed`: the agent refused)."""
    if not isinstance(frame, str):
        return None
    try:
        message = tp.decode_server(frame)
    except msgspec.MsgspecError:
        return None
    if isinstance(message, tp.Hello) and TERMINAL_ID_RE.fullmatch(message.terminal_id):
        return message
    return None


def audit_email(text: str) -> str:
    """An email as the audit log holds it: an address in lower case, anything else quoted with
    its control, bidi and invisible characters escaped (pair.api.grammar.shown)."""
    return text.lower() if grammar.is_email(text) else grammar.shown(text)


def audit_terminal_id(text: str) -> str:
    """A terminal id as the audit log holds it: one of the protocol's grammar as it is, anything
    else quoted and escaped."""
    return text if TERMINAL_ID_RE.fullmatch(text) else grammar.shown(text)


async def roles_changed(ctx: Context, space_id: str, changes: Sequence[tp.RoleChange]) -> None:
    """The agent of `space_id` reported role changes it carried out (`Heartbeat.roles`): one
    `terminal.role` row each, by the starter who granted it, detail `TERMINAL_ID: EMAIL is now
    a ROLE`; at most MAX_ROLE_ROWS from one heartbeat (more is a container misbehaving)."""
    for change in changes[:MAX_ROLE_ROWS]:
        detail = f"{audit_terminal_id(change.terminal_id)}: {audit_email(change.email)} is now a {change.role}"
        await ctx.store.audit(ctx.now(), audit_email(change.by), "terminal.role", space_id, detail)
    if len(changes) > MAX_ROLE_ROWS:
        many = (space_id, len(changes), MAX_ROLE_ROWS)
        log.warning("the agent of %s reported %d role changes at once; audited the first %d.", *many)
