"""`pair spaces connect`, `proxy`, `up`, `down`, `sessions`, `kick`: using a Space over SSH."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperCommand

from pair.api.errors import PairError
from pair.cli import connecting
from pair.cli.output import human_bytes, table
from pair.cli.resolve import choose_space, form, one_ref
from pair.cli.session import signed_in
from pair.cli.ssh_config import ssh_config
from pair.printable import printable

if TYPE_CHECKING:  # httpx loads only when a command talks to the broker
    from typer._click.core import Context as ClickContext

    from pair.api.client import Client
    from pair.api.models import Space, StreamInfo


def connect(
    ctx: typer.Context,
    space_option: Annotated[
        str | None,
        typer.Option("--space", metavar="SPACE", help="The same as the SPACE argument.", show_default=False),
    ] = None,
) -> None:
    """Open an SSH shell in a Space through the broker; arguments after `--` go to ssh.

    SPACE is its name or sp_… id; without it, the only Space you can see."""
    raise typer.Exit(connecting.connect(ctx.meta.get(RAW_ARGS, list(ctx.args)), space_option))


def proxy(space_id: Annotated[str, typer.Argument(help="The Space's sp_… id.")]) -> None:
    """(ssh's ProxyCommand) carry one SSH connection through the broker's relay."""
    from pair.proxy import main

    raise typer.Exit(main([space_id]))


def _wait_for(client: Client, space: Space, states: tuple[str, ...], timeout: float = 20.0) -> Space:
    """Poll until the Space reaches one of `states`, or its agent reports that sshd failed (in two
    polls running: a report sent just before the agent heard the request is overtaken at once)."""
    from pair.api import readiness

    deadline = time.monotonic() + timeout
    failed = False
    while space.state not in states and time.monotonic() < deadline:
        if readiness.ssh_failure(space):
            if failed:
                break
            failed = True
        else:
            failed = False
        time.sleep(0.25)
        space = client.space(space.id)
    return space


def _set_service(ref: str | None, *, up: bool) -> None:
    from pair.api import readiness

    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), ref, "up" if up else "down", owned=True)
        changed = client.up(target.id) if up else client.down(target.id)
        result = _wait_for(client, changed, ("running",) if up else ("stopped",))
    if up and (why := readiness.ssh_failure(result)):
        raise PairError(f'SSH did not start in "{result.name}": {why}', readiness.ssh_down(result).hint)
    print(f'Space "{result.name}" ({result.id}) is {result.state}')


SPACE_HELP = "The Space: its sp_… id or a name unique among those you can see. [default: the only one you own]"
SpaceArg = Annotated[str | None, typer.Argument(metavar="SPACE", help=SPACE_HELP, show_default=False)]
SpaceOption = Annotated[
    str | None, typer.Option("--space", metavar="SPACE", help="The same as the SPACE argument.", show_default=False)
]


def up(space: SpaceArg = None, space_option: SpaceOption = None) -> None:
    """Start SSH service in a Space you own (its container must be running)."""
    _set_service(one_ref(space, space_option, "up"), up=True)


def down(space: SpaceArg = None, space_option: SpaceOption = None) -> None:
    """Stop SSH service in a Space you own; open sessions end."""
    _set_service(one_ref(space, space_option, "down"), up=False)


def sessions(
    space: SpaceArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    space_option: SpaceOption = None,
) -> None:
    """Open sessions in a Space you own (SSH, terminals, ports): who, what, from where, since when, bytes each way."""
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), one_ref(space, space_option, "sessions"), "sessions", owned=True)
        rows = client.streams(target.id)
    if as_json:  # the same fields as the API's, times as in `list --json`
        print(json.dumps([_stream_row(r) for r in rows], indent=2))
        return
    if not rows:
        print(f'Nobody is connected to "{target.name}".')
        return
    print(
        table(
            ("email", "kind", "from", "since", "in", "out"),
            [
                (
                    r.email,
                    r.kind,
                    r.client_address,
                    r.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    human_bytes(r.bytes_in),
                    human_bytes(r.bytes_out),
                )
                for r in rows
            ],
        )
    )


def _stream_row(stream: StreamInfo) -> dict[str, object]:
    return {
        "id": stream.id,
        "email": stream.email,
        "kind": stream.kind,  # ssh, terminal, port
        "from": stream.client_address,
        "since": stream.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bytes_in": stream.bytes_in,
        "bytes_out": stream.bytes_out,
    }


def kick(
    words: Annotated[
        list[str],
        typer.Argument(
            metavar="EMAIL",
            help="Whose sessions to end; a first word without @ names the Space (default: the only one you own).",
        ),
    ],
    space_option: SpaceOption = None,
) -> None:
    """End a person's open streams (SSH, terminals, ports) in a Space you own; they can reconnect if still shared."""
    if len(words) > 2 or (len(words) == 2 and "@" in words[0]):
        raise PairError(
            "kick ends one person's sessions: name the Space (optional) and one email.", f"Run `{form('kick')}`."
        )
    positional, email = (words[0], words[1]) if len(words) == 2 else (None, words[0])
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), one_ref(positional, space_option, "kick"), "kick", owned=True)
        client.kick(target.id, email)
    print(f'Ended {printable(email)}\'s sessions in "{target.name}".')


RAW_ARGS = "pair.raw_args"


class KeepsRawArgs(TyperCommand):
    """Keeps the words after the command name as typed: click drops the `--` that tells
    `connect SPACE -- CMD` from `connect -- CMD`."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        ctx.meta[RAW_ARGS] = list(args)
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    app.command(
        cls=KeepsRawArgs,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        options_metavar="[SPACE] [--space SPACE] [-- SSH_ARGS...]",
    )(connect)
    app.command("ssh-config")(ssh_config)
    app.command()(proxy)
    app.command()(up)
    app.command()(down)
    app.command()(sessions)
    app.command(options_metavar="[SPACE] [--space SPACE]")(kick)
