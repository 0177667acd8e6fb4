"""What the Spaces page shows, computed once in Python for the template and the JSON poll alike,
so a row reads the same whether it was rendered or updated in place."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pair.api import models as m

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
    platform: str
    hostname: str
    last_seen_text: str
    last_seen_iso: str
    last_seen_title: str
    shared_with: list[str] = field(default_factory=list)
    can_add: list[str] = field(default_factory=list)
    version: str = ""  # changes when the row needs rendering again (its shares)

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


def row(space: m.Space, teammates: list[str], now: int) -> Row:
    label, hint = STATES.get(space.state, (space.state.title(), ""))
    container = space.container
    shared = list(space.shared_with or [])
    can_add = [e for e in teammates if e not in shared] if space.role == "owner" else []
    seen = space.last_seen_at
    return Row(
        id=space.id,
        name=space.name,
        owner=space.owner,
        role=space.role,
        owned=space.role == "owner",
        state=space.state,
        state_label=label,
        state_hint=hint,
        platform=PLATFORMS.get(container.platform, "Container") if container else "Not bootstrapped yet",
        hostname=container.hostname if container else "",
        last_seen_text=ago(seen, now),
        last_seen_iso=seen.strftime("%Y-%m-%dT%H:%M:%SZ") if seen else "",
        last_seen_title=seen.strftime("%Y-%m-%d %H:%M:%S UTC") if seen else "The container has not reported yet.",
        shared_with=shared,
        can_add=can_add,
        version=hashlib.sha256("\n".join([space.role, *shared, "", *can_add]).encode()).hexdigest()[:12],
    )
