"""`pair quota`: your limits, where each comes from, and what your Spaces use now."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from pair.cli.output import table
from pair.cli.session import signed_in

if TYPE_CHECKING:
    from pair.api.models import Quota, QuotaLine

RESOURCE_NAMES = {"spaces": "Spaces", "compute": "compute units", "storage": "storage units"}


def _source(line: QuotaLine) -> str:
    if not line.sources:
        return "nobody sets it"
    return " + ".join(f"{s.limit} ({'you' if s.kind == 'user' else 'group ' + s.name})" for s in line.sources)


def rows(quota: Quota) -> list[list[str]]:
    return [
        [
            RESOURCE_NAMES[line.resource],
            str(line.used),
            "unlimited" if line.limit is None else str(line.limit),
            _source(line),
        ]
        for line in quota.lines
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
