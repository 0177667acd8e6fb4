"""What the broker and the agent judge and record of terminals, each in its one place (issue 11):
a grant's email is checked against pair.api.grammar where it passes the broker
(broker.terminals.refusal, enforced by the splice) and where it arrives at the agent
(Attachment.control); role changes are audited from the agent's report of the grants it carried
out (Terminal.set_role, broker.terminals.roles_changed), once per change; what reaches the audit
log is escaped.

Reproductions of a tester's findings: a grant was audited when the starter sent it (so a refused,
repeated or bogus one was logged as done, and a client could flood the log), its email was
checked nowhere and written raw into the log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, ClassVar, TypeVar, cast

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from broker import streams, terminals
from broker.context import Context
from broker.hub import Stream
from broker.links import Closed, Frame
from pair.api import grammar
from pair.api import models as m
from pair.api import terminal as tp
from pair.api.closecodes import CloseCode
from pair.container.terminals import (
    BUSY,
    ROLE_CHANGES_KEPT,
    Attachment,
    Limits,
    Terminal,
    TerminalError,
    TerminalManager,
)
from pair.printable import printable

T = TypeVar("T")
ALICE, BOB, CAROL, DAVE = "alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"
TERMINAL = "term_abcdefghijkl"
WHEN = datetime(2027, 1, 15, tzinfo=timezone.utc)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10))


# Texts a grant may carry: addresses (some in capitals), addresses with a dangerous or invisible
# character spliced in, and anything at all.
addresses = st.from_regex(m.EMAIL_BODY, fullmatch=True).filter(lambda e: len(e) <= 254)
spliced = st.builds(
    lambda email, bad, at: email[: at % (len(email) + 1)] + bad + email[at % (len(email) + 1) :],
    addresses,
    st.sampled_from(["\x1b[31m", "\n", "\r", "\u202e", "\u2060", "\x00", " ", '"', "<", "\\", "\u00ad"]),
    st.integers(min_value=0),
)
grant_emails = st.one_of(addresses, addresses.map(str.upper), spliced, st.text(max_size=400))


def grant(email: str, role: tp.Role = "driver") -> str:
    return tp.encode(tp.Grant(email=email, role=role))


# -- a grant's email, where it passes the broker -------------------------------------------------


@given(grant_emails, st.sampled_from(["driver", "viewer"]))
def test_the_broker_passes_a_grant_only_for_an_email_address(email: str, role: tp.Role) -> None:
    frame = grant(email, role)
    try:
        tp.decode_client(frame)
    except msgspec.ValidationError:  # not a message of the protocol: the agent answers it
        assert terminals.refusal(frame) is None
        return
    assert (terminals.refusal(frame) is None) == grammar.is_email(email)


def test_the_broker_passes_everything_else_a_person_says_to_the_agent() -> None:
    assert terminals.refusal(tp.encode(tp.Resize(cols=80, rows=24))) is None
    assert terminals.refusal('{"type": "grant"}') is None  # the agent answers `bad_message`
    assert terminals.refusal("not json") is None
    assert terminals.refusal(grant("bob\x1b]0;owned\x07@example.com")) == terminals.BAD_GRANT


class QueueLink:
    """A link whose other end sends the frames queued on it, then closes normally."""

    def __init__(self, *frames: Frame) -> None:
        self.incoming: asyncio.Queue[Frame | Closed] = asyncio.Queue()
        for frame in frames:
            self.incoming.put_nowait(frame)
        self.sent: list[Frame] = []
        self.closed: Closed | None = None

    def end(self) -> None:
        self.incoming.put_nowait(Closed(CloseCode.NORMAL))

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def receive(self) -> Frame | Closed:
        return await self.incoming.get()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self.closed is None:
            self.closed = Closed(code, reason)
            self.incoming.put_nowait(self.closed)


def test_the_splice_closes_a_terminal_stream_that_grants_to_a_text_that_is_no_email() -> None:
    async def scenario() -> None:
        person = QueueLink(grant(BOB), b"ls\r", grant("bob@example.com\n\x1b[2J"), grant(CAROL))
        hello = tp.encode(_hello())  # the agent's first message, read before the splice
        agent = QueueLink()
        stream = Stream("pty_x", "sp_x", "usr_alice", ALICE, "terminal")
        stream.agent.set_result(cast(Any, agent))
        stream.first = hello
        await streams.splice(stream, cast(Any, person), limits=streams.TERMINAL_LIMITS)
        assert agent.sent == [grant(BOB), b"ls\r"]  # neither the bad grant nor what followed it
        assert person.sent[0] == hello  # the message read before the splice comes first
        assert person.closed == Closed(CloseCode.INVALID, terminals.BAD_GRANT)
        assert stream.close_reason == terminals.BAD_GRANT

    run(scenario())


class ReachStore:
    """Users alice (owns sp_x), bob (it is shared with him) and carol (not shared)."""

    users: ClassVar[dict[str, str]] = {ALICE: "usr_alice", BOB: "usr_bob", CAROL: "usr_carol"}

    async def user_by_email(self, email: str) -> Any:
        user_id = self.users.get(email)
        return SimpleNamespace(id=user_id, email=email) if user_id else None

    async def space(self, space_id: str) -> Any:
        return SimpleNamespace(id=space_id, owner_id="usr_alice", deleted_at=None) if space_id == "sp_x" else None

    async def is_shared_with(self, space_id: str, user_id: str) -> bool:
        return (space_id, user_id) == ("sp_x", "usr_bob")


def test_the_splice_answers_a_grant_to_someone_who_cannot_reach_the_space_and_passes_it_on_no_further() -> None:
    """Repro: a grant to carol (the Space not shared with her) or to an email that is no user's
    reached the agent and was carried out, so carol would type the moment she was shared."""

    async def scenario() -> None:
        ctx = cast(Context, SimpleNamespace(store=ReachStore()))
        unknown = "nobody@example.com"
        person = QueueLink(grant(CAROL), grant(unknown.upper()), grant(BOB), grant(ALICE, "viewer"), b"ls\r")
        agent = QueueLink()
        stream = Stream("pty_x", "sp_x", "usr_alice", ALICE, "terminal")
        stream.agent.set_result(cast(Any, agent))
        stream.first = tp.encode(_hello())
        person.end()
        await streams.splice(stream, cast(Any, person), limits=streams.terminal_limits(ctx, "sp_x"))
        assert agent.sent == [grant(BOB), grant(ALICE, "viewer"), b"ls\r"]  # bob and alice may be granted
        answers = [tp.decode_server(f) for f in person.sent if isinstance(f, str)]
        assert [a for a in answers if not isinstance(a, tp.Hello)] == [
            tp.Refused(message=terminals.no_reach(CAROL), code="forbidden"),
            tp.Refused(message=terminals.no_reach(unknown), code="forbidden"),
        ]
        assert person.closed == Closed(CloseCode.NORMAL, "") and not stream.close_reason  # the stream went on

    run(scenario())


def _hello() -> tp.Hello:
    return tp.Hello(
        terminal_id=TERMINAL, email=ALICE, role="driver", started_by=ALICE, started_at=WHEN, cols=80, rows=24
    )


def test_the_agents_hello_names_the_terminal_and_nothing_else_does() -> None:
    assert terminals.hello(tp.encode(_hello())) == _hello()
    assert terminals.hello(tp.encode(tp.Closed(reason="That terminal is not open any more.", code="not_found"))) is None
    bad_id = msgspec.structs.replace(_hello(), terminal_id="term_x\n")
    assert terminals.hello(tp.encode(bad_id)) is None
    assert terminals.hello(b"\x1b[H") is None
    assert terminals.hello("{") is None


# -- a grant's email, where it arrives at the agent ----------------------------------------------


def attachment_of(email: str) -> tuple[Attachment, list[tuple[str, str, str]]]:
    """An attachment of `email` to a stand-in terminal that records the role changes asked of it
    (the real one, with a PTY, is in tests/container/test_terminals.py)."""
    asked: list[tuple[str, str, str]] = []

    def set_role(who: str, role: str, *, by: str) -> None:
        if by != ALICE:
            raise TerminalError("Only the starter decides who may type.", "forbidden")
        asked.append((who, role, by))

    terminal = SimpleNamespace(limits=Limits(), set_role=set_role)
    return Attachment(cast(Any, terminal), email, "driver", False), asked


def sent(attachment: Attachment) -> list[Any]:
    return list(attachment._items)


@given(grant_emails, st.sampled_from(["driver", "viewer"]))
def test_the_agent_acts_on_a_grant_only_for_an_email_address_in_lower_case(email: str, role: tp.Role) -> None:
    async def scenario() -> None:
        alice, asked = attachment_of(ALICE)
        await alice.control(grant(email, role))
        if grammar.is_email(email):
            assert asked == [(email.lower(), role, ALICE)] and sent(alice) == []
        else:
            assert asked == []
            [refused] = sent(alice)
            assert isinstance(refused, tp.Refused) and refused.code == "bad_message"
            assert printable(refused.message) == refused.message  # the value is shown escaped

    run(scenario())


@given(grant_emails)
def test_the_grammar_keeps_an_address_in_lower_case_and_names_anything_else_escaped(email: str) -> None:
    if grammar.is_email(email):
        assert grammar.email_address(email) == email.lower()
        return
    with pytest.raises(grammar.Invalid) as refused:
        grammar.email_address(email)
    assert refused.value.message.endswith(" is not an email address.") and refused.value.hint
    assert printable(refused.value.message) == refused.value.message


# -- role changes: the agent reports what it carried out, the broker audits that ----------------

pool = st.sampled_from([ALICE, BOB, CAROL])
grants = st.lists(st.tuples(pool, pool, st.sampled_from(["driver", "viewer"])), max_size=60)


@given(grants)
def test_the_agent_reports_exactly_the_grants_that_changed_who_may_type(ops: list[tuple[str, str, tp.Role]]) -> None:
    """Whatever grants arrive (refused, repeated, about the starter), the agent's report holds one
    change per change in the terminal's drivers, each flipping one person, each by the starter."""
    manager = TerminalManager("nobody")
    terminal = SimpleNamespace(
        id=TERMINAL, started_by=ALICE, drivers={ALICE: None}, attachments={}, manager=manager, _people_changed=list
    )
    real_changes = 0
    for by, email, role in ops:
        before = set(terminal.drivers)
        with contextlib.suppress(TerminalError):
            Terminal.set_role(cast(Any, terminal), email, role, by=by)
        real_changes += set(terminal.drivers) != before
    reported = manager.take_role_changes()
    assert len(reported) == real_changes
    drivers = {ALICE}
    for change in reported:
        assert change.by == ALICE and change.terminal_id == TERMINAL
        assert (change.email in drivers) != (change.role == "driver")  # never a change to what was
        (drivers.add if change.role == "driver" else drivers.remove)(change.email)
    assert drivers == set(terminal.drivers)
    assert manager.take_role_changes() == []  # each reported once


class AuditStore:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    async def audit(self, now: int, actor: str, action: str, target: str, detail: str = "") -> None:
        self.rows.append((actor, action, target, detail))


def test_each_reported_role_change_is_one_row_by_the_starter_escaped_and_bounded() -> None:
    async def scenario() -> None:
        store = AuditStore()
        ctx = cast(Context, SimpleNamespace(store=store, now=lambda: 1))
        odd = ["Bob@Example.com", "x\x1b]0;owned\x07@example.com", "\u202eevil@example.com"]
        changes = [tp.RoleChange(terminal_id=TERMINAL, email=email, role="driver", by=ALICE) for email in odd]
        changes.append(tp.RoleChange(terminal_id="term_\n", email=BOB, role="viewer", by="Alice@Example.com\n"))
        await terminals.roles_changed(ctx, "sp_x", changes)
        assert store.rows == [
            (ALICE, "terminal.role", "sp_x", f"{TERMINAL}: {BOB} is now a driver"),
            (ALICE, "terminal.role", "sp_x", f"{TERMINAL}: 'x\\x1b]0;owned\\x07@example.com' is now a driver"),
            (ALICE, "terminal.role", "sp_x", f"{TERMINAL}: '\\u202eevil@example.com' is now a driver"),
            ("'Alice@Example.com\\n'", "terminal.role", "sp_x", f"'term_\\n': {BOB} is now a viewer"),
        ]
        flood = [tp.RoleChange(terminal_id=TERMINAL, email=BOB, role="driver", by=ALICE)] * 1000
        await terminals.roles_changed(ctx, "sp_x", flood)
        assert len(store.rows) == 4 + terminals.MAX_ROLE_ROWS

    run(scenario())


@example(heartbeats=set())
@given(st.sets(st.integers(min_value=0, max_value=249), max_size=6))
def test_a_burst_of_grants_is_each_audited_once_or_refused(heartbeats: set[int]) -> None:
    """Repro: the starter grants dave, then toggles bob 249 times within a second. The agent kept
    at most 100 unsent changes, dropping the oldest, so dave's grant had no audit row. Now each
    change carried out has exactly one row, in order, whenever the heartbeats (`heartbeats`: before
    which grants one is sent) come; a grant refused while the queue is full (`busy`) has none."""
    assert ROLE_CHANGES_KEPT <= terminals.MAX_ROLE_ROWS  # what waits fits in one heartbeat's rows

    async def scenario() -> None:
        store = AuditStore()
        ctx = cast(Context, SimpleNamespace(store=store, now=lambda: 1))
        manager = TerminalManager("nobody")
        terminal = SimpleNamespace(
            id=TERMINAL, started_by=ALICE, drivers={ALICE: None}, attachments={}, manager=manager, _people_changed=list
        )
        ops: list[tuple[str, tp.Role]] = [(DAVE, "driver")]
        ops += [(BOB, "driver" if i % 2 == 0 else "viewer") for i in range(249)]
        carried_out, refused = [], 0
        for i, (email, role) in enumerate(ops):
            if i in heartbeats:
                await terminals.roles_changed(ctx, "sp_x", manager.take_role_changes())
            before = set(terminal.drivers)
            refusal: TerminalError | None = None
            try:
                Terminal.set_role(cast(Any, terminal), email, role, by=ALICE)
            except TerminalError as exc:
                refusal = exc
            if refusal is not None:
                assert (refusal.code, refusal.message) == ("busy", BUSY)
                assert set(terminal.drivers) == before  # refused: nothing changed
                refused += 1
            elif set(terminal.drivers) != before:
                carried_out.append((ALICE, "terminal.role", "sp_x", f"{TERMINAL}: {email} is now a {role}"))
        await terminals.roles_changed(ctx, "sp_x", manager.take_role_changes())
        assert store.rows == carried_out
        assert store.rows[0][3] == f"{TERMINAL}: {DAVE} is now a driver"
        if not heartbeats:  # all 250 before one heartbeat: the queue filled, then grants were refused
            assert len(carried_out) == ROLE_CHANGES_KEPT and refused > 0

    run(scenario())


@given(st.one_of(st.from_regex(tp.TERMINAL_ID_PATTERN, fullmatch=True), st.text(max_size=40)))
def test_the_cli_takes_a_terminal_id_only_of_the_agents_grammar(text: str) -> None:
    if terminals.TERMINAL_ID_RE.fullmatch(text):
        assert grammar.terminal_id(text) == text
        return
    with pytest.raises(grammar.Invalid) as refused:
        grammar.terminal_id(text)
    assert refused.value.message.endswith(" is not a terminal id (term_ and 12 letters and digits).")
    assert printable(refused.value.message) == refused.value.message  # the value is shown escaped
    assert refused.value.hint == "List them with `pair spaces terminals SPACE`."


@given(st.text(max_size=400))
def test_an_email_reaches_the_audit_log_on_one_printable_line(text: str) -> None:
    shown = terminals.audit_email(text)
    assert printable(shown) == shown and "\n" not in shown
    # an address as it is kept; anything else quoted, cut at 60 characters, each escaped in at most 10
    assert (shown == text.lower()) if grammar.is_email(text) else (len(shown) <= 2 + 10 * 61)
