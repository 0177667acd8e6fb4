"""`pair quota`: your limits, where each comes from, and what your Spaces use now."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from pair.cli.output import table
from pair.cli.session import signed_in

if TYPE_CHECKING:
    from pair.api.models import Quota


def rows(quota: Quota) -> list[list[str]]:
    """The table's cells, in the one wording of a quota (pair.api.models.QuotaLine)."""
    from pair.api.models import QUOTA_RESOURCE_NAMES  # loaded when the command runs, not with the tree

    return [
        [QUOTA_RESOURCE_NAMES[line.resource], str(line.used), line.limit_text(), line.origin()] for line in quota.lines
    ]


def quota(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False) -> None:
    """Your limits (Spaces, compute units of running Spaces, storage units of all), where each
    comes from (your own and your groups', summed), and what your Spaces use now."""
    client, _ = signed_in()
    with client:
        found = client.quota()
    if as_json:
        lines = [
            {
                "resource": line.resource,
                "used": line.used,
                "limit": line.limit,
                "sources": [{"kind": s.kind, "name": s.name, "limit": s.limit} for s in line.sources],
            }
            for line in found.lines
        ]
        print(json.dumps({"email": found.email, "lines": lines}, indent=2))
        return
    print(table(("resource", "used", "limit", "from"), rows(found)))
