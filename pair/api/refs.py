"""How a person names a Space on the command line: the argument `pair spaces connect SPACE` takes,
and the `Host` aliases `pair spaces ssh-config` writes. The CLI parses and writes them; the
broker's web page prints the same commands for people to copy, so both read these rules here.
"""

from __future__ import annotations

import re
from collections import Counter

from pair.api.models import Space


def space_ref(space: Space, visible: list[Space]) -> str:
    """What to type for `space` among the Spaces a person can see (`visible`, which holds it): its
    name when no other visible Space has that name (or that id: ids are matched first), else its
    `sp_…` id. `pair.cli.resolve` accepts exactly these (an id, or a name unique among the
    visible Spaces)."""
    clashes = sum(1 for s in visible if s.name == space.name or (s.id == space.name and s.id != space.id))
    return space.name if clashes == 1 else space.id


def id_alias(space: Space) -> str:
    """The alias every Space always has, `sp_….pair`; known_hosts pins host keys under it."""
    return f"{space.id}.pair"


def _owner_label(email: str) -> str:
    """The owner's email local part, as a host-name label: [a-z0-9_-]."""
    local = email.split("@", 1)[0].lower()
    return re.sub(r"[^a-z0-9_-]+", "-", local).strip("-") or "owner"


def host_aliases(spaces: list[Space]) -> dict[str, list[str]]:
    """Each Space's `Host` names by id: `NAME.pair` (or `NAME.OWNER.pair` for someone else's Space
    whose name clashes with another visible one, or nothing when even that is ambiguous), then
    always `ID.pair`."""
    by_name = Counter(s.name for s in spaces)
    wanted: dict[str, str] = {}
    for s in spaces:
        if by_name[s.name] == 1 or s.role == "owner":
            wanted[s.id] = f"{s.name}.pair"
        else:
            wanted[s.id] = f"{s.name}.{_owner_label(s.owner)}.pair"
    ids = {id_alias(s) for s in spaces}
    taken = Counter(wanted.values())
    out: dict[str, list[str]] = {}
    for s in spaces:
        name = wanted[s.id]
        own = id_alias(s)
        clash = taken[name] > 1 or (name in ids and name != own)
        out[s.id] = [own] if clash or name == own else [name, own]
    return out
