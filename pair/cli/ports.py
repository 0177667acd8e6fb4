"""`pair spaces ports share|list|unshare` (a Space's ports at their own URLs, issue 12) and
`pair spaces forward` (ports of a Space on this machine, without SSH)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from pair.api.errors import PairError
from pair.cli.output import table
from pair.cli.resolve import choose_space, one_ref
from pair.cli.session import signed_in
from pair.cli.spaces import SpaceOption
from pair.printable import printable

if TYPE_CHECKING:
    from pair.api.models import SharedPort

app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Share a Space's ports at their own URLs, with access levels (owner, shared, authenticated, public).",
)

Level = Literal["owner", "shared", "authenticated", "public"]
SpaceArg = Annotated[
    str | None,
    typer.Argument(
        metavar="SPACE",
        help="The Space: its sp_… id or a name unique among those you can see. [default: the only one]",
        show_default=False,
    ),
]
PortArg = Annotated[int, typer.Argument(help="The TCP port in the container, 1–65535.", min=1, max=65535)]
LEVEL_WORDS = {
    "owner": "you only",
    "shared": "the people the Space is shared with",
    "authenticated": "everyone signed in to this broker",
    "public": "anyone with the link",
}


@app.command()
def share(
    port: PortArg,
    space: SpaceArg = None,
    space_option: SpaceOption = None,
    level: Annotated[
        Level | None,
        typer.Option(help="Who can open it: owner (default for a new share), shared, authenticated, public."),
    ] = None,
    label: Annotated[str | None, typer.Option(help="A name for the port on the web page (one line, ≤ 80).")] = None,
) -> None:
    """Share a port of a Space you own at its own URL, or change its level or label."""
    from pair.api.models import PortShare

    ref = one_ref(space, space_option, "ports share")
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), ref, "ports share", owned=True)
        shared = client.share_port(target.id, port, PortShare(level=level, label=label))
    print(f"Port {shared.port} of {target.name} is shared with {LEVEL_WORDS[shared.level]}:")
    print(printable(shared.url))


@app.command("list")
def list_ports(
    space: SpaceArg = None,
    space_option: SpaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
) -> None:
    """A Space's shared ports with their URLs and levels, and (yours) the ports listening in it."""
    ref = one_ref(space, space_option, "ports list")
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), ref, "ports list")
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
        rows = [[str(p.port), p.level, printable(p.url), printable(p.label)] for p in ports.shared]
        print(table(("port", "level", "url", "label"), rows))
    else:
        print(f"No port of {target.name} is shared.", file=sys.stderr)
    if ports.listening:
        listening = ", ".join(str(p) for p in ports.listening)
        print(f"Listening in the container, not shared: {listening} (`pair spaces ports share PORT`).", file=sys.stderr)


def _iso(port: SharedPort) -> str:
    return port.shared_at.strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command()
def unshare(port: PortArg, space: SpaceArg = None, space_option: SpaceOption = None) -> None:
    """Stop sharing a port; its open connections end."""
    ref = one_ref(space, space_option, "ports unshare")
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), ref, "ports unshare", owned=True)
        client.unshare_port(target.id, port)
    print(f"Port {port} of {target.name} is no longer shared.")


def forward(
    args: Annotated[
        list[str], typer.Argument(help="[SPACE] LOCAL[:REMOTE]…: listen on 127.0.0.1:LOCAL for port REMOTE.")
    ],
    space_option: SpaceOption = None,
) -> None:
    """Forward ports of a Space to this machine over the broker (no SSH); Ctrl-C ends it."""
    from pair.cli import forwarding

    positional, specs = forwarding.split_args(args)
    ref = one_ref(positional, space_option, "forward")
    client, session = signed_in()
    with client:
        target = choose_space(client.spaces(), ref, "forward")
    raise typer.Exit(forwarding.run(session.url, session.token, target, specs))
