"""`pair-broker`: serve, and administer users and signing keys on the data dir directly."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from broker import accounts, serve_lock, serving
from broker.context import Context, open_context, timestamp
from broker.errors import Problem
from broker.settings import Settings, SettingsError
from pair.api.errors import PairError
from pair.cli import durations
from pair.files import write_private

T = TypeVar("T")

app = typer.Typer(
    name="pair-broker",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The pair broker: accounts, Space tokens, and the relay between teammates and containers.",
)
users_app = typer.Typer(no_args_is_help=True, help="Create, list and remove users, and reset auth keys.")
keys_app = typer.Typer(no_args_is_help=True, help="Token signing keys.")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Where the database and signing keys live. [env: PAIR_BROKER_DATA_DIR]", show_default=False
    ),
]


class CliError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.load(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc), "See docs/operations.md for every setting.") from exc


def _with_context(data_dir: Path | None, work: Callable[[Context], Awaitable[T]]) -> T:
    ctx = open_context(_settings(data_dir=data_dir))

    async def run() -> T:
        try:
            return await work(ctx)
        finally:
            await ctx.store.close()

    try:
        return asyncio.run(run())
    except Problem as exc:
        raise CliError(exc.message, exc.detail) from exc


# -- serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on. [env: PAIR_BROKER_HOST; default 127.0.0.1]", show_default=False),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port; 0 picks a free one. [env: PAIR_BROKER_PORT; default 8000]", show_default=False),
    ] = None,
    data_dir: DataDir = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url",
            help="URL containers reach this broker at, written into tokens. [env: PAIR_BROKER_PUBLIC_URL; default http://HOST:PORT]",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (costs ~1/3 of throughput).")
    ] = False,
) -> None:
    """Run the broker (SQLite in the data dir; a signing key and first admin are made on first start)."""
    import uvicorn

    from broker import relay
    from broker.app import create_app

    settings = _settings(host=host, port=port, data_dir=data_dir, public_url=public_url)
    lock = _lock_data_dir(settings.data_dir)  # held until this process ends
    sock = _listen(settings.host, settings.port)
    settings = dataclasses.replace(settings, port=sock.getsockname()[1])
    lock.record(settings.url)
    ctx = open_context(settings)
    asyncio.run(_first_admin(ctx))

    config = serving.config(create_app(ctx=ctx), log_level=settings.log_level, access_log=access_log)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(
                    f"pair broker listening on http://{_display(settings.host)}:{settings.port}"
                    f" (public URL {settings.url}, data in {settings.data_dir})",
                    flush=True,
                )

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Before uvicorn drops the connections (with a bare 1012): people hear why their
            # sessions end, and agents that the broker will be back (they retry within a second).
            await relay.close_all(ctx)
            await super().shutdown(sockets)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to whatever
    # handler was there before; a no-op one makes a graceful stop exit 0, as supervisors expect.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    Server(config).run(sockets=[sock])
    asyncio.run(ctx.store.close())
    print("pair broker stopped.", flush=True)


def _lock_data_dir(data_dir: Path) -> serve_lock.ServeLock:
    try:
        return serve_lock.acquire(data_dir)
    except serve_lock.DataDirBusy as busy:
        pid, url = busy.holder.pid, busy.holder.url
        who = f"pid {pid}" if pid else "another process"
        raise CliError(
            f"Another pair-broker is already serving {data_dir} ({who}{', at ' + url if url else ''}).",
            "One broker process per data directory: use that one, stop it first"
            f"{f' (kill {pid})' if pid else ''}, or give this one its own --data-dir. "
            "Admin commands (pair-broker users …) work next to it.",
        ) from None
    except OSError as exc:
        raise CliError(
            f"Cannot lock the data directory {data_dir}: {exc.strerror}.",
            "Pick a data directory this user can write (--data-dir or PAIR_BROKER_DATA_DIR).",
        ) from exc


def _listen(host: str, port: int) -> socket.socket:
    try:
        return serving.listen(host, port)
    except OSError as exc:
        raise CliError(
            f"Cannot listen on {host}:{port}: {exc.strerror}.",
            "Pick another --port (or PAIR_BROKER_PORT), or stop what is using it.",
        ) from exc


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _first_admin(ctx: Context) -> None:
    """On an empty database, create the first admin and write their auth key to a 0600 file."""
    if await ctx.store.users():
        return
    user, key = await accounts.create_user(ctx, ctx.settings.admin_email, is_admin=True, actor="first-start")
    key_file = ctx.settings.data_dir / "admin.key"
    write_private(key_file, key + "\n")
    print(
        f"Created the first admin, {user.email}; their auth key is in {key_file} (mode 0600).\n"
        f"Log in with:  pair login {user.email} --key-file {key_file} --url {ctx.settings.url}",
        flush=True,
    )


# -- users ----------------------------------------------------------------------------------


def _actor() -> str:
    """Who the audit log names for an admin command run on the server: its OS account."""
    try:
        return f"pair-broker:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"pair-broker:uid {os.getuid()}"


def _emit_key(email: str, key: str, key_file: Path | None) -> None:
    if key_file is None:
        print(key)
        print(
            f"That is {email}'s auth key; it is shown once. Log in with: pair login {email} --key-file FILE",
            file=sys.stderr,
        )
        return
    if not key_file.parent.is_dir():
        raise CliError(f"The directory {key_file.parent} does not exist.", "Create it, or pick another --key-file.")
    write_private(key_file, key + "\n")
    print(f"Wrote {email}'s auth key to {key_file} (mode 0600).")


KeyFile = Annotated[
    Path | None, typer.Option("--key-file", help="Write the auth key to this 0600 file instead of printing it.")
]


@users_app.command("add")
def users_add(
    email: str,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
    key_file: KeyFile = None,
    data_dir: DataDir = None,
) -> None:
    """Create a user and their auth key (shown once)."""
    if key_file is not None and not key_file.parent.is_dir():
        raise CliError(f"The directory {key_file.parent} does not exist.", "Create it, or pick another --key-file.")
    user, key = _with_context(data_dir, lambda ctx: accounts.create_user(ctx, email, is_admin=admin, actor=_actor()))
    _emit_key(user.email, key, key_file)


@users_app.command("list")
def users_list(data_dir: DataDir = None) -> None:
    """List users."""
    users = _with_context(data_dir, lambda ctx: ctx.store.users())
    print(f"{'EMAIL':<40} {'ROLE':<6} CREATED")
    for u in users:
        print(f"{u.email:<40} {'admin' if u.is_admin else 'user':<6} {timestamp(u.created_at):%Y-%m-%d %H:%M}")


@users_app.command("remove")
def users_remove(email: str, data_dir: DataDir = None) -> None:
    """Remove a user; the Spaces they own are deleted."""
    user = _with_context(data_dir, lambda ctx: accounts.remove_user(ctx, email, actor=_actor()))
    print(f"Removed {user.email}.")


@users_app.command("reset-key")
def users_reset_key(email: str, key_file: KeyFile = None, data_dir: DataDir = None) -> None:
    """Replace a user's auth key; their sessions end."""
    if key_file is not None and not key_file.parent.is_dir():
        raise CliError(f"The directory {key_file.parent} does not exist.", "Create it, or pick another --key-file.")
    user, key = _with_context(data_dir, lambda ctx: accounts.reset_key(ctx, email, actor=_actor()))
    _emit_key(user.email, key, key_file)


# -- keys -----------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(data_dir: DataDir = None) -> None:
    """Add a new signing key. Tokens signed by older keys keep verifying until they expire."""
    ctx = open_context(_settings(data_dir=data_dir))
    key = ctx.keyring.rotate()
    asyncio.run(ctx.store.close())
    print(f"New signing key {key.kid}; {len(ctx.keyring.keys)} key(s) published in the JWKS.")


@keys_app.command("list")
def keys_list(data_dir: DataDir = None) -> None:
    """List signing keys, newest (the one that signs) first."""
    ctx = open_context(_settings(data_dir=data_dir))
    asyncio.run(ctx.store.close())
    for i, key in enumerate(ctx.keyring.keys):
        print(f"{key.kid}  {timestamp(key.created_at):%Y-%m-%d %H:%M}  {'signing' if i == 0 else 'verifying'}")


# -- audit ----------------------------------------------------------------------------------


@app.command("audit")
def audit(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show the newest N entries.")] = 50,
    since: Annotated[
        str | None, typer.Option("--since", help="Only entries from the last DURATION, such as 1h or 7d.")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Only what this actor did: an email, or agent:SPACE_ID.")
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Only this action and its sub-actions: space, space.delete, …")
    ] = None,
    target: Annotated[
        str | None, typer.Option("--target", help="Only entries about this Space id, email or session id.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array, for scripts.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Show the audit log: who created, shared, connected to and deleted what, and when (UTC)."""
    since_at: int | None = None
    if since is not None:
        try:
            since_at = int(time.time()) - durations.parse(since)
        except PairError as exc:
            raise CliError(f"--since: {exc.message}", exc.hint) from exc
    entries = _with_context(
        data_dir,
        lambda ctx: ctx.store.audit_log(
            limit=limit, since=since_at, actor=actor or "", action=action or "", target=target or ""
        ),
    )
    if as_json:
        rows = [
            dict(
                at=f"{timestamp(e.at):%Y-%m-%dT%H:%M:%SZ}",
                actor=e.actor,
                action=e.action,
                target=e.target,
                detail=e.detail,
            )
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return
    if not entries:
        print("No audit entries match.", file=sys.stderr)
        return
    widths = [max(len(getattr(e, f)) for e in entries) for f in ("actor", "action", "target")]
    for e in entries:
        cells = (e.actor.ljust(widths[0]), e.action.ljust(widths[1]), e.target.ljust(widths[2]), e.detail)
        print(f"{timestamp(e.at):%Y-%m-%d %H:%M:%S}  " + "  ".join(cells).rstrip())


def main() -> None:
    os.umask(0o077)  # the database, its WAL and every key file: readable by the broker's user only
    try:
        app()
    except CliError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        sys.exit(1)
