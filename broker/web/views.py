"""What the Spaces page shows, computed once in Python for the template and the JSON poll alike,
so a row reads the same whether it was rendered or updated in place."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pair.api import endpoints as ep
from pair.api import models as m
from pair.api import readiness
from pair.api import terminal as tp
from pair.api.refs import host_aliases, space_ref

STATES: dict[str, tuple[str, str]] = {
    "created": ("Created", "Authorized; waiting for the container to bootstrap with its token."),
    "starting": ("Starting", "The container is registered and SSH is starting."),
    "running": ("Running", "The container is connected and SSH is up."),
    "stopping": ("Stopping", "SSH is being stopped."),
    "stopped": ("Stopped", "SSH is stopped, or the container is not running."),
    "deleted": ("Deleted", "The Space was deleted."),
}
PLATFORMS = {
    "codespaces": "GitHub Codespaces",
    "devcontainer": "Dev Container",
    "devfile": "Devfile workspace",
    "generic": "Container",
}


GROUP = "group:"  # a group among the people a Space is or could be shared with (no email holds a colon)


def who(value: str) -> str:
    """How a share reads: an email, or `group eng`."""
    return f"group {value.removeprefix(GROUP)}" if value.startswith(GROUP) else value


@dataclass(frozen=True)
class Way:
    """One way into a Space: a command to copy (after `setup`, once per laptop, when there is
    one), and for a terminal also a link that opens it in the browser (`href`, named `link`)."""

    key: str  # stable, so focus can find the same copy button after a refresh
    label: str
    command: str
    setup: str = ""
    href: str = ""
    link: str = ""  # the link's text: "Terminal", "Join"
    link_name: str = ""  # its accessible name, which starts with its text (WCAG 2.5.3)


@dataclass(frozen=True)
class Visitor:
    """One person connected to a Space, however many streams they have open (SSH, terminals, ports)."""

    email: str
    since_text: str  # "5 minutes ago", after "connected"
    since_iso: str
    since_title: str
    streams: int
    addresses: list[str]  # the hosts they came from; empty unless the viewer owns the Space
    more: str  # the rest of the line: ", 2 sessions, from 10.0.0.7" (the word `pair spaces sessions` has)


@dataclass(frozen=True)
class SharedPortView:
    """One shared port on a card: its link, and its level in words."""

    port: int
    url: str
    level: str
    level_text: str
    label: str


LEVELS: dict[str, str] = {
    "owner": "Only you",
    "shared": "People the Space is shared with",
    "authenticated": "Everyone signed in to this broker",
    "public": "Anyone with the link",
}


@dataclass
class Row:
    id: str
    name: str
    owner: str
    role: str
    owned: bool
    state: str
    state_label: str
    state_hint: str
    status_class: str  # the pill's colour: the state, or ssh-down (the label and hint say it in words)
    platform: str
    hostname: str
    template: str
    last_seen_text: str
    last_seen_iso: str
    last_seen_title: str
    shared_with: list[str] = field(default_factory=list)
    can_add: list[str] = field(default_factory=list)
    ways: list[Way] = field(default_factory=list)
    here: list[Visitor] = field(default_factory=list)
    ports: list[SharedPortView] = field(default_factory=list)
    ports_off: str = ""  # why port sharing is off on this broker, if it is
    listening: list[int] = field(default_factory=list)  # candidates to share (the owner's view)
    version: str = ""  # changes when the card needs rendering again (shares, ways in), not for live fields

    def json(self) -> dict[str, Any]:
        return asdict(self)


def heading(count: int) -> str:
    if count == 0:
        return "You have no Container Spaces yet."
    if count == 1:
        return "You have one Container Space."
    return f"You have {count} Container Spaces."


def ago(then: datetime | None, now: int) -> str:
    if then is None:
        return "Never"
    seconds = max(0, now - int(then.timestamp()))
    if seconds < 10:
        return "Just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    raise AssertionError("unreachable")


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _title(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def ways_in(
    space: m.Space,
    visible: list[m.Space],
    aliases: Mapping[str, list[str]],
    terminals: Sequence[tp.TerminalInfo] = (),
) -> list[Way]:
    """How a person gets into `space`, in the order the page lists them: the one place a new way
    (a shared port) is added. Commands name the Space as the CLI wants it among the Spaces this
    person sees (pair.api.refs), so they work when pasted. A Space that takes terminals (its
    agent connected: running, or starting) offers a new terminal and each open one to join."""
    ref = space_ref(space, visible)
    ways = [
        Way("connect", "A shell in the Space", f"pair spaces connect {ref}"),
        Way(
            "ssh",
            "Plain ssh, scp, rsync, git or VS Code Remote-SSH",
            f"ssh {aliases[space.id][0]}",
            setup="pair spaces ssh-config",
        ),
    ]
    if space.state not in ("running", "starting"):
        return ways
    page = ep.WEB_TERMINAL_PAGE.format(space_id=space.id)
    ways.append(
        Way(
            "terminal",
            "A terminal in the browser",
            f"pair spaces terminal {ref}",
            href=page,
            link="Terminal",
            link_name=f"Terminal: open a new one in {space.name}",
        )
    )
    for info in terminals:
        watching = len(info.people)
        label = f"Terminal {info.id}, started by {info.started_by}" + (
            f", {watching} attached" if watching else ", nobody attached"
        )
        ways.append(
            Way(
                f"join-{info.id}",
                label,
                f"pair spaces terminal {ref} --join {info.id}",
                href=f"{page}?join={info.id}",
                link="Join",
                link_name=f"Join the terminal {info.started_by} started in {space.name}",
            )
        )
    return ways


def visitors(streams: list[m.StreamInfo], now: int) -> list[Visitor]:
    """Open streams grouped by person, longest connected first."""
    by_email: dict[str, list[m.StreamInfo]] = {}
    for stream in sorted(streams, key=lambda s: s.opened_at):
        by_email.setdefault(stream.email, []).append(stream)
    out = []
    for email, own in by_email.items():
        first = own[0].opened_at
        hosts = list(dict.fromkeys(s.client_address.rsplit(":", 1)[0] for s in own if s.client_address))
        more = (f", {len(own)} sessions" if len(own) > 1 else "") + (f", from {', '.join(hosts)}" if hosts else "")
        out.append(Visitor(email, ago(first, now).lower(), _iso(first), _title(first), len(own), hosts, more))
    return out


def rows(
    visible: list[m.Space],
    teammates: list[str],
    streams: Mapping[str, list[m.StreamInfo]],
    now: int,
    ports: Mapping[str, m.SpacePorts] | None = None,
    terminals: Mapping[str, list[tp.TerminalInfo]] | None = None,
) -> list[Row]:
    """The cards of the Spaces a person sees (`visible`), with the teammates they could add,
    each Space's open streams (`streams` by Space id), its shared ports (`ports`) and its open
    terminals (`terminals`)."""
    aliases = host_aliases(visible)
    terminals = terminals or {}
    return [
        row(
            s,
            teammates,
            now,
            ways_in(s, visible, aliases, terminals.get(s.id, [])),
            visitors(streams.get(s.id, []), now),
            (ports or {}).get(s.id),
        )
        for s in visible
    ]


def row(
    space: m.Space,
    teammates: list[str],
    now: int,
    ways: list[Way],
    here: list[Visitor],
    ports: m.SpacePorts | None = None,
) -> Row:
    label, hint = STATES.get(space.state, (space.state.title(), ""))
    failure = readiness.ssh_failure(space)
    if failure:  # the container is connected but its sshd does not serve: the agent's words
        label, hint = "SSH down", f"SSH is not being served: {failure}"
    container = space.container
    shared = list(space.shared_with or []) + [GROUP + g for g in space.shared_with_groups or []]
    can_add = [e for e in teammates if e not in shared] if space.role == "owner" else []
    seen = space.last_seen_at
    shared_ports = [
        SharedPortView(p.port, p.url, p.level, LEVELS[p.level], p.label) for p in (ports.shared if ports else [])
    ]
    ports_off = ports.reason if ports is not None and not ports.enabled else ""
    listening = list(ports.listening) if ports else []
    rendered = json.dumps(
        [space.role, shared, can_add, [asdict(w) for w in ways], [asdict(p) for p in shared_ports], listening]
    )
    return Row(
        id=space.id,
        name=space.name,
        owner=space.owner,
        role=space.role,
        owned=space.role == "owner",
        state=space.state,
        state_label=label,
        state_hint=hint,
        status_class="ssh-down" if failure else space.state,
        platform=PLATFORMS.get(container.platform, "Container") if container else "Not bootstrapped yet",
        hostname=container.hostname if container else "",
        template=space.template or "",
        last_seen_text=ago(seen, now),
        last_seen_iso=_iso(seen) if seen else "",
        last_seen_title=_title(seen) if seen else "The container has not reported yet.",
        shared_with=shared,
        can_add=can_add,
        ways=ways,
        here=here,
        ports=shared_ports,
        ports_off=ports_off,
        listening=listening,
        version=hashlib.sha256(rendered.encode()).hexdigest()[:12],
    )
