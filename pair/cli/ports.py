"""`pair spaces ports share|list|unshare` (a Space's ports at their own URLs, issue 12) and
`pair spaces forward` (ports of a Space on this machine, without SSH)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from pair.api.errors import PairError
from pair.api.models import SharedPort, Space
from pair.cli.output import table
from pair.cli.resolve import resolve_space
from pair.cli.session import signed_in

if TYPE_CHECKING:  # httpx loads only when a command talks to the broker
    from pair.api.client import Client

app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Share a Space's ports at their own URLs, with access levels (owner, shared, authenticated, public).",
)

Level = Literal["owner", "shared", "authenticated", "public"]
SpaceArg = Annotated[str | None, typer.Argument(help="The Space (name or sp_… id); optional if you see one.")]
PortArg = Annotated[int, typer.Argument(help="The TCP port in the container, 1–65535.", min=1, max=65535)]
LEVEL_WORDS = {
    "owner": "you only",
    "shared": "the people the Space is shared with",
    "authenticated": "everyone signed in to this broker",
    "public": "anyone with the link",
}


def pick(client: Client, ref: str | None, *, owned: bool = False) -> Space:
    """The Space `ref` names, or the only one you can see (own, with `owned`)."""
    spaces = client.spaces()
    if ref:
        return resolve_space(spaces, ref)
    mine = [s for s in spaces if s.role == "owner"] if owned else spaces
    if len(mine) == 1:
        return mine[0]
    if not mine:
        raise PairError("You have no Space to do that in.", "Create one with `pair spaces authorize`.")
    names = ", ".join(s.name for s in mine)
    raise PairError(f"Which Space? You can see several: {names}.", "Name one after the port.")


@app.command()
def share(
    port: PortArg,
    space: SpaceArg = None,
    level: Annotated[
        Level | None,
        typer.Option(help="Who can open it: owner (default for a new share), shared, authenticated, public."),
    ] = None,
    label: Annotated[str | None, typer.Option(help="A name for the port on the web page (one line, ≤ 80).")] = None,
) -> None:
    """Share a port of a Space you own at its own URL, or change its level or label."""
    from pair.api.models import PortShare

    client, _ = signed_in()
    with client:
        target = pick(client, space, owned=True)
        shared = client.share_port(target.id, port, PortShare(level=level, label=label))
    print(f"Port {shared.port} of {target.name} is shared with {LEVEL_WORDS[shared.level]}:")
    print(shared.url)


@app.command("list")
def list_ports(
    space: SpaceArg = None, as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False
) -> None:
    """A Space's shared ports with their URLs and levels, and (yours) the ports listening in it."""
    client, _ = signed_in()
    with client:
        target = pick(client, space)
        ports = client.ports(target.id)
    if as_json:
        shared = [
            {"port": p.port, "level": p.level, "label": p.label, "url": p.url, "shared_at": _iso(p)}
            for p in ports.shared
        ]
        out = {"space": target.name, "space_id": target.id, "enabled": ports.enabled, "reason": ports.reason}
        print(json.dumps({**out, "shared": shared, "listening": ports.listening}, indent=2))
        return
    if not ports.enabled:
        raise PairError(ports.reason)
    if ports.shared:
        print(table(("port", "level", "url", "label"), [[str(p.port), p.level, p.url, p.label] for p in ports.shared]))
    else:
        print(f"No port of {target.name} is shared.", file=sys.stderr)
    if ports.listening:
        listening = ", ".join(str(p) for p in ports.listening)
        print(f"Listening in the container, not shared: {listening} (`pair spaces ports share PORT`).", file=sys.stderr)


def _iso(port: SharedPort) -> str:
    return port.shared_at.strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command()
def unshare(port: PortArg, space: SpaceArg = None) -> None:
    """Stop sharing a port; its open connections end."""
    client, _ = signed_in()
    with client:
        target = pick(client, space, owned=True)
        client.unshare_port(target.id, port)
    print(f"Port {port} of {target.name} is no longer shared.")


def forward(
    args: Annotated[
        list[str], typer.Argument(help="[SPACE] LOCAL[:REMOTE]…: listen on 127.0.0.1:LOCAL for port REMOTE.")
    ],
) -> None:
    """Forward ports of a Space to this machine over the broker (no SSH); Ctrl-C ends it."""
    from pair.cli import forwarding

    ref, specs = forwarding.split_args(args)
    client, session = signed_in()
    with client:
        target = pick(client, ref)
    raise typer.Exit(forwarding.run(session.url, session.token, target, specs))
