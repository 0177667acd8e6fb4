"""`pair spaces list`, without the CLI framework: `pair.__main__` runs it straight for
`pair spaces list [--json]` (a command people and scripts run often; Typer's tree costs more than
the list), and the Typer command calls the same function, so both print the same."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from pair.cli.output import human_bytes, table
from pair.cli.session import signed_in
from pair.printable import printable

if TYPE_CHECKING:
    from pair.api.models import Space

# The seed's columns (id name role state … so `awk '{print $1, $2, $4}'` prints id, name and
# state), then pair's own. `llm_tokens` is always `-`: pair runs no models (docs/web.md).
LIST_COLUMNS = ("id", "name", "role", "state", "created_at", "cpu", "memory", "disk", "net", "llm_tokens", "template")
FAST_ARGV = (["spaces", "list"], ["spaces", "list", "--json"])  # what __main__ runs here directly


def _row(space: Space) -> dict[str, object]:
    c = space.container
    return {
        "id": space.id,
        "name": space.name,
        "role": space.role,
        "state": space.state,
        "created_at": space.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": c.cpus if c and c.cpus else None,
        "memory": c.memory_bytes if c and c.memory_bytes else None,
        "disk": c.disk_bytes if c and c.disk_bytes else None,
        "owner": space.owner,
        "template": space.template,
        "net": space.net_bytes,  # bytes through the relay in the last 24 h
        "llm_tokens": None,  # the seed's column: pair runs no models
        # {"serving", "reason", "supervisor_state"} as the container's agent last reported, or null
        "ssh": {f: getattr(space.ssh, f) for f in space.ssh.__struct_fields__} if space.ssh else None,
    }


def _state_cell(space: Space) -> str:
    """The state, and `(ssh down)` when the Space should serve SSH but its sshd does not."""
    from pair.api import readiness

    return f"{space.state} (ssh down)" if readiness.ssh_failure(space) else space.state


def list_spaces(*, as_json: bool) -> None:
    """Print the Spaces the signed-in person owns or that are shared with them (a table, or JSON).
    Raises PairError."""
    from pair.api import readiness

    client, _ = signed_in()
    with client:
        spaces = client.spaces()
    rows = [_row(s) for s in spaces]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not spaces:
        print("No Spaces yet. Create one with `pair spaces authorize`.", file=sys.stderr)
        return
    cells = [
        [
            s.id,
            s.name,
            s.role,
            _state_cell(s),
            str(row["created_at"]),
            f"{s.container.cpus:g}" if s.container and s.container.cpus else "-",
            human_bytes(s.container.memory_bytes if s.container else 0),
            human_bytes(s.container.disk_bytes if s.container else 0),
            human_bytes(s.net_bytes),
            "-",
            s.template or "-",
        ]
        for s, row in zip(spaces, rows, strict=True)
    ]
    print(table(LIST_COLUMNS, cells))
    for s in spaces:
        if why := readiness.ssh_failure(s):
            print(printable(f"{s.name}: SSH is not being served: {why}"))  # the container's words


def main(argv: list[str]) -> int:
    """`pair spaces list [--json]` run straight from `pair.__main__`: the exit status, and
    errors printed as every pair command prints them (pair.report)."""
    from pair.api.errors import PairError
    from pair.report import error

    try:
        list_spaces(as_json=argv[-1] == "--json")
    except PairError as exc:
        error(exc.message, exc.hint)
        return 1
    except KeyboardInterrupt:
        print("\nCancelled.", file=sys.stderr)
        return 130
    return 0
