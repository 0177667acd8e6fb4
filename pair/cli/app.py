"""The `pair` command: the command tree, and the one place errors are printed."""

from __future__ import annotations

from typing import Annotated

import typer

from pair import __version__, runner
from pair.cli import auth, connect, init, keys, ports, quota, space_keys, spaces, terminal
from pair.cli.web import web

app = typer.Typer(
    rich_markup_mode=None,
    name="pair",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Share a hosted dev container with your teammates over SSH.",
)
app.command()(auth.login)
app.command()(auth.logout)
app.command()(auth.whoami)
app.command()(web)
app.command()(quota.quota)
app.add_typer(keys.app, name="keys")


@app.command()
def agent() -> None:
    """(In the container, run by supervisord) keep the Space registered and its authorized keys current."""
    from pair.container.agent import main

    raise typer.Exit(main())


@app.command()
def verify(
    user: Annotated[str, typer.Argument(help="The login user (sshd's %u).")],
    key_blob: Annotated[str, typer.Argument(metavar="KEY", help="The key's base64 blob (sshd's %k).")],
    key_type: Annotated[str, typer.Argument(metavar="TYPE", help="The key's type (sshd's %t).")],
) -> None:
    """(In the container, sshd's AuthorizedKeysCommand) print the authorized_keys line for a key
    the Space lets in, nothing otherwise. `pair verify` starts without this CLI (pair.__main__)."""
    from pair.verify import main

    raise typer.Exit(main([user, key_blob, key_type]))


app.add_typer(spaces.app, name="spaces")
connect.register(spaces.app)
terminal.register(spaces.app)
spaces.app.command("init")(init.init)
spaces.app.add_typer(ports.app, name="ports")
spaces.app.command("forward")(ports.forward)
spaces.app.add_typer(space_keys.app, name="keys")


def _version(value: bool) -> None:
    if value:
        print(f"pair {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    pass


def run(argv: list[str] | None = None) -> None:
    runner.run(app, "pair", argv)
