"""`pair spaces terminal`, `terminals`, `terminal-role`: a Space's shared terminals in the local
terminal (issue 11). The shell lives in the container (its agent's `TerminalManager`); this is
one person's stream to it through the broker, speaking pair.api.terminal's protocol.

In a terminal, stdin goes raw (every key, Ctrl-C included, is a byte for the remote shell), the
remote size follows the window (SIGWINCH), and the tty is restored on every way out (the shell's
exit, a revocation, a dropped connection, SIGTERM/SIGHUP). The shell's exit status becomes
pair's. Without a terminal (a pipe), stdin is sent as it comes and nothing is changed.

Start-up stays lazy: asyncio and websockets load when a command runs.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from pair.api.errors import PairError
from pair.cli.connect import SpaceArg, SpaceOption
from pair.cli.output import table
from pair.cli.resolve import choose_space, one_ref, resolve_space
from pair.cli.session import signed_in
from pair.printable import printable

if TYPE_CHECKING:
    from pair.api import terminal as tp
    from pair.api.client import Client

ROLE_WAIT = 5.0  # seconds for a role change to show in the Space's listing


def _window() -> tuple[int, int] | None:
    """The local terminal's size (columns, rows) when stdout is one."""
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except (OSError, ValueError):
        return None
    if size.columns < 1 or size.lines < 1:
        return None
    return min(size.columns, 1000), min(size.lines, 1000)


def terminal(
    space: SpaceArg = None,
    join: Annotated[
        str | None, typer.Option("--join", metavar="ID", help="Join this open terminal (`pair spaces terminals`).")
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Join as a viewer, even if you may type.")] = False,
    space_option: SpaceOption = None,
) -> None:
    """Open a terminal in a Space here (a login shell that teammates can join), or join one with --join."""
    if read_only and not join:
        raise PairError("--read-only is for joining a terminal.", "Add --join ID (`pair spaces terminals` lists them).")
    if join is not None:
        _check_terminal_id(join)
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), one_ref(space, space_option, "terminal"), "terminal")
        query: dict[str, str | int | bool] = {}
        if join:
            query.update(join=join, read_only=read_only)
        window = _window()
        if window is not None:
            query.update(cols=window[0], rows=window[1])
        url = client.terminal_url(target.id, **query)
        headers = client.bearer()
        # After a dropped connection: the same terminal, joined as it was (a starter is a driver
        # again by the agent's rules; --read-only stays), at the window's size then.
        rejoin_url = functools.partial(_rejoin_url, client, target.id, read_only)
    import asyncio

    from pair.cli import terminal_stream

    status = asyncio.run(terminal_stream.run(url, headers, target.name, rejoin_url))
    raise typer.Exit(status)


def _rejoin_url(
    client: Client, space_id: str, read_only: bool, terminal_id: str, window: tuple[int, int] | None
) -> str:
    query: dict[str, str | int | bool] = {"join": terminal_id, "read_only": read_only}
    if window is not None:
        query.update(cols=window[0], rows=window[1])
    return client.terminal_url(space_id, **query)


def _check_terminal_id(text: str) -> None:
    """Raises PairError unless `text` is a terminal id (pair.api.grammar.terminal_id): checked
    here, before anything connects."""
    from pair.api.grammar import Invalid, terminal_id

    try:
        terminal_id(text)
    except Invalid as exc:
        raise PairError(exc.message, exc.hint) from None


def _people(info: tp.TerminalInfo) -> str:
    return ", ".join(f"{printable(p.email)} ({p.role})" for p in info.people) or "nobody"


def terminals(
    space: SpaceArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    space_option: SpaceOption = None,
) -> None:
    """The open terminals of a Space: id, who started each, who is attached and how."""
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), one_ref(space, space_option, "terminals"), "terminals")
        rows = client.terminals(target.id)
    if as_json:
        import msgspec

        print(json.dumps(msgspec.to_builtins(rows), indent=2))
        return
    if not rows:
        print(f'No terminal is open in "{target.name}". Open one with `pair spaces terminal {target.name}`.')
        return
    print(
        table(
            ("id", "started by", "since", "size", "attached"),
            [
                (
                    r.id,
                    printable(r.started_by),
                    r.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    f"{r.cols}x{r.rows}",
                    _people(r),
                )
                for r in rows
            ],
        )
    )


def terminal_role(
    space: Annotated[str, typer.Argument(help="The Space (name or sp_… id).")],
    terminal_id: Annotated[str, typer.Argument(metavar="ID", help="The terminal (`pair spaces terminals`).")],
    email: Annotated[str, typer.Argument(help="Whose keyboard to grant or take back.")],
    role: Annotated[str, typer.Argument(metavar="driver|viewer", help="driver: may type; viewer: watches.")],
) -> None:
    """Let someone type in a terminal you started (driver), or take the keyboard back (viewer)."""
    from pair.api.grammar import Invalid, email_address

    _check_terminal_id(terminal_id)
    if role not in ("driver", "viewer"):
        raise PairError(f"{role!r} is not a role.", "Say driver (may type) or viewer (watches).")
    try:
        email = email_address(email.strip())  # as the broker and the agent keep emails
    except Invalid as exc:
        raise PairError(exc.message, exc.hint) from None
    client, _ = signed_in()
    with client:
        target = resolve_space(client.spaces(), space, "terminal-role")
        url = client.terminal_url(target.id, join=terminal_id, control=True)  # not a join: no output
        import asyncio

        from pair.cli import terminal_stream

        wanted: tp.Role = "driver" if role == "driver" else "viewer"
        shows = functools.partial(_shows_role, client, target.id, terminal_id, email, role)
        if not asyncio.run(terminal_stream.grant(url, client.bearer(), email, wanted, shows, ROLE_WAIT)):
            raise PairError(
                f"The container did not confirm that {email} is now a {role}.",
                "Check with `pair spaces terminals`; the terminal may have ended.",
            )
    print(f"{email} {'may type' if role == 'driver' else 'watches'} in {terminal_id} now.")


def _shows_role(client: Client, space_id: str, terminal_id: str, email: str, role: str) -> bool:
    """Whether the Space's listing (its agent's report) shows `email` with `role`."""
    info = next((t for t in client.terminals(space_id) if t.id == terminal_id), None)
    return info is not None and (email in info.drivers) == (role == "driver")


def register(app: typer.Typer) -> None:
    app.command()(terminal)
    app.command()(terminals)
    app.command("terminal-role")(terminal_role)
