"""`pair-broker`: serve, and administer users and signing keys on the data dir directly."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from broker import access_requests, accounts, admin, database_wait, groups, quotas, serve_lock, serving, templates
from broker.context import (
    DATA_DIR_HINT,
    Context,
    DataDirError,
    check_writable,
    data_dir_error,
    open_context,
    timestamp,
)
from broker.errors import Problem
from broker.outbox import OutboxBus
from broker.settings import Settings, SettingsError, split_address
from broker.signing import SigningKey
from broker.store import SchemaTooNew, StoreError, StoreUnavailable
from broker.store.backends import shown
from pair import durations, runner
from pair.api import models as m
from pair.api.errors import PairError
from pair.files import check_new_file, is_stdout, stage_private
from pair.printable import printable

T = TypeVar("T")

app = typer.Typer(
    rich_markup_mode=None,
    name="pair-broker",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="The pair broker: accounts, Space tokens, and the relay between teammates and containers.",
)
users_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Create, list and remove users, and reset auth keys."
)
keys_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Token signing keys.")
templates_app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Space templates: what a Space costs in compute and storage units.",
)
groups_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Groups of people: shares and quotas.")
members_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Add people to a group or take them out.")
quota_app = typer.Typer(rich_markup_mode=None, no_args_is_help=True, help="Quotas of users and groups.")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(templates_app, name="templates")
app.add_typer(groups_app, name="groups")
groups_app.add_typer(members_app, name="members")
app.add_typer(quota_app, name="quota")
requests_app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Access requests: people asking for an account."
)
app.add_typer(requests_app, name="requests")

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Where the database and signing keys live. [env: PAIR_BROKER_DATA_DIR]", show_default=False
    ),
]


Database = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="The database: a postgresql:// URL (several replicas share it), or sqlite:///PATH; "
        "default the SQLite file in the data dir. [env: PAIR_BROKER_DATABASE_URL]",
        show_default=False,
    ),
]
EncryptionKeyFile = Annotated[
    Path | None,
    typer.Option(
        "--encryption-key-file",
        help="A 0600 file holding the key that seals the signing keys in the database (needed with "
        "PostgreSQL). [env: PAIR_BROKER_ENCRYPTION_KEY_FILE, or the key itself in PAIR_BROKER_ENCRYPTION_KEY]",
        show_default=False,
    ),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.load(**overrides)
    except SettingsError as exc:
        raise PairError(str(exc), "See docs/operations.md for every setting.") from exc


def _with_context(
    data_dir: Path | None,
    work: Callable[[Context], Awaitable[T]],
    database: str | None = None,
    encryption_key_file: Path | None = None,
    *,
    discard_unreadable_keys: bool = False,
) -> T:
    """Run `work` on the existing database (admin verbs never create one: the data dir's SQLite
    file, or `database`), in an event loop of its own that opens and closes the store. What it
    announces on the bus (streams to end, keys to push) reaches the serving broker through the
    database (broker.outbox), or, on PostgreSQL, through its bus (NOTIFY) as any replica's does."""
    settings = _settings(data_dir=data_dir, database=database, encryption_key_file=encryption_key_file)

    async def run() -> T:
        ctx = await open_context(settings, create=False, discard_unreadable_keys=discard_unreadable_keys)
        if not ctx.bus.shared:  # what the verb announces reaches the serving broker (PostgreSQL's bus does itself)
            await ctx.bus.close()
            ctx.bus = OutboxBus(ctx.database, ctx.clock)
        try:
            return await work(ctx)
        finally:
            await ctx.close()

    try:
        return asyncio.run(run())
    except Problem as exc:
        raise PairError(exc.message, exc.detail_for(True)) from exc  # the server's operator: an admin
    except StoreUnavailable as exc:
        raise DataDirError(str(exc), exc.hint) from exc


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
    apps_domain: Annotated[
        str | None,
        typer.Option(
            "--apps-domain",
            help="Wildcard domain for shared ports' URLs, e.g. '*.apps.pair.example.com'; unset: port sharing is off."
            " [env: PAIR_BROKER_APPS_DOMAIN]",
            show_default=False,
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log", help="Log every request (costs ~1/3 of throughput).")
    ] = False,
    metrics_address: Annotated[
        str | None,
        typer.Option(
            "--metrics-address",
            help="Serve Prometheus /metrics on this HOST:PORT, apart from the public port (e.g. 127.0.0.1:9464)."
            " [env: PAIR_BROKER_METRICS_ADDRESS; default: none]",
            show_default=False,
        ),
    ] = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
    replica_address: Annotated[
        str | None,
        typer.Option(
            "--replica-address",
            help="On PostgreSQL, the URL the other replicas reach this one at on the internal network."
            " [env: PAIR_BROKER_REPLICA_ADDRESS; default http://HOST:PORT]",
            show_default=False,
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            "--forwarded-allow-ips",
            help="Believe X-Forwarded-For/-Proto from these addresses (the load balancer's; comma-separated; '*': any)."
            " [env: PAIR_BROKER_FORWARDED_ALLOW_IPS; default: uvicorn's, 127.0.0.1]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the broker (SQLite in the data dir, or --database; a signing key and first admin are made on first start)."""
    import uvicorn

    from broker import peering, streams
    from broker.app import create_app

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        public_url=public_url,
        apps_domain=apps_domain,
        metrics_address=metrics_address,
        database=database,
        encryption_key_file=encryption_key_file,
        replica_address=replica_address,
        forwarded_allow_ips=forwarded_allow_ips,
    )
    lock = _lock_data_dir(settings.data_dir)  # held until this process ends
    # Bound at once (a taken port says so now), listening only once the database is open: until
    # then connecting is refused, and a load balancer sends this replica nothing.
    sock = _bind(settings.host, settings.port)
    _serve_metrics(settings)
    settings = dataclasses.replace(settings, port=sock.getsockname()[1])
    lock.record(settings.url)
    app = create_app(settings)  # opens its own store in uvicorn's event loop
    config = serving.config(  # and the log
        app, log_level=settings.log_level, access_log=access_log, forwarded_allow_ips=settings.forwarded_allow_ips
    )
    try:
        asyncio.run(_prepare(settings))
        _listen(sock, settings)
    except BaseException:
        sock.close()
        raise

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                where = (
                    f"database {shown(settings.database_location)}"
                    if settings.database
                    else f"data in {settings.data_dir}"
                )
                print(
                    f"pair broker listening on http://{_display(settings.host)}:{settings.port}"
                    f" (public URL {settings.url}, {where})",
                    flush=True,
                )
                # Once it serves: does its --replica-address reach itself? (held until the server ends)
                self.address_check = asyncio.create_task(peering.check_address(app.ctx))

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Before uvicorn drops the connections (with a bare 1012): people hear why their
            # streams end, and agents that the broker will be back (they retry within a second).
            await streams.close_all(app.ctx)
            await super().shutdown(sockets)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to whatever
    # handler was there before; a no-op one makes a graceful stop exit 0, as supervisors expect.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server = Server(config)
    serving.collect_garbage_less()
    server.run(sockets=[sock])
    if not server.started:  # its lifespan failed: uvicorn logged why
        raise PairError("The broker did not start.", "The lines above say why.")
    print("pair broker stopped.", flush=True)


def _lock_data_dir(data_dir: Path) -> serve_lock.ServeLock:
    try:
        return serve_lock.acquire(data_dir)
    except serve_lock.DataDirBusy as busy:
        pid, url = busy.holder.pid, busy.holder.url
        who = f"pid {pid}" if pid else "another process"
        raise PairError(
            f"Another pair-broker is already serving {data_dir} ({who}{', at ' + url if url else ''}).",
            "One broker process per data directory: use that one, stop it first"
            f"{f' (kill {pid})' if pid else ''}, or give this one its own --data-dir. "
            "Admin commands (pair-broker users …) work next to it.",
        ) from None
    except OSError as exc:  # a read-only or full data dir, said as every data dir failure is
        raise data_dir_error(data_dir, exc) from exc


def _bind(host: str, port: int) -> socket.socket:
    try:
        return serving.bind(host, port)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from exc


def _listen(sock: socket.socket, settings: Settings) -> None:
    try:
        sock.listen(serving.BACKLOG)
    except OSError as exc:  # another process bound it too meanwhile, and listens first
        raise _cannot_listen(settings.host, settings.port, exc) from exc


def _cannot_listen(host: str, port: int, exc: OSError) -> PairError:
    return PairError(
        f"Cannot listen on {host}:{port}: {exc.strerror}.",
        "Pick another --port (or PAIR_BROKER_PORT), or stop what is using it.",
    )


def _serve_metrics(settings: Settings) -> None:
    """Start the /metrics listener, if one is asked for, and say where it listens."""
    if not settings.metrics_address:
        return
    from broker import metrics

    host, port = split_address("--metrics-address", settings.metrics_address)
    try:
        _server, port = metrics.serve(host, port)
    except OSError as exc:
        raise PairError(
            f"Cannot listen for metrics on {settings.metrics_address}: {exc.strerror or exc}.",
            "Pick another --metrics-address (or PAIR_BROKER_METRICS_ADDRESS), or stop what is using it.",
        ) from exc
    print(f"pair broker metrics on http://{_display(host)}:{port}/metrics", flush=True)


def _display(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _prepare(settings: Settings) -> None:
    """Before listening, in an event loop and with a store of its own: the data dir and database
    take writes (DataDirError otherwise), and an empty database gets its first admin. A
    PostgreSQL server that does not answer is waited for, saying so (broker.database_wait)."""

    async def opened() -> Context:
        ctx = await open_context(settings, create=True)
        try:
            await check_writable(ctx)
        except BaseException:
            await ctx.close()
            raise
        return ctx

    ctx = await database_wait.open_waiting(str(settings.database_location), opened)
    try:
        if not await ctx.store.users():
            await _first_admin(ctx)
    finally:
        await ctx.close()


async def _first_admin(ctx: Context) -> None:
    key_file = ctx.settings.data_dir / "admin.key"
    try:
        user = await _create_with_key(
            ctx,
            key_file,
            lambda tx: accounts.create_user(tx, ctx.settings.admin_email.strip(), is_admin=True, actor="first-start"),
        )
    except Problem as exc:
        if exc.code == "exists":  # another replica on the same database made it first
            return
        raise PairError(f"PAIR_BROKER_ADMIN_EMAIL: {exc.message}", exc.detail) from exc  # not an email
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


async def _create_with_key(
    ctx: Context, key_file: Path | None, change: Callable[[Context], Awaitable[tuple[T, str]]]
) -> T:
    """Make `change` (a new user, a new auth key) in one transaction (it gets the context bound
    to it) and write its key to `key_file`, all or nothing: the file is staged inside the
    transaction and renamed into place only once that committed, so a file that cannot be
    written leaves the database as it was. Without a file, the key is printed once, after the
    commit."""
    staged: Path | None = None
    try:
        async with ctx.transaction() as tx:
            done, key = await change(tx)
            if key_file is not None:
                try:
                    staged = stage_private(key_file, key + "\n")
                except OSError as exc:  # the disk filled up since the check, say
                    raise PairError(
                        f"Cannot write {key_file}: {exc.strerror}; nothing was changed.", KEY_FILE_HINT
                    ) from exc
    except BaseException:
        if staged is not None:
            staged.unlink(missing_ok=True)
        raise
    if key_file is not None and staged is not None:
        try:
            os.replace(staged, key_file)
        except OSError as exc:  # changed since the check (made immutable, say): the key is lost
            staged.unlink(missing_ok=True)
            raise PairError(
                f"Cannot write {key_file}: {exc.strerror}; the change was made but its key is lost.",
                "Run `pair-broker users reset-key EMAIL --key-file FILE` for a new key.",
            ) from exc
    else:
        print(key)
    return done


KEY_FILE_HINT = "Pass --key-file a new file in a directory you can write."


def _check_key_file(key_file: Path | None, *, replace: bool) -> Path | None:
    """Asked before the database is touched: a key that cannot be written is never made. Returns
    where the key goes: None for standard output (no --key-file, or "-": pair.files.is_stdout)."""
    if key_file is None or is_stdout(key_file):
        return None
    check_new_file(key_file, replace=replace, what="an auth key", hint=KEY_FILE_HINT)
    return key_file


def _emitted(email: str, key_file: Path | None) -> None:
    if key_file is None:
        print(
            f"That is {email}'s auth key; it is shown once. Log in with: pair login {email} --key-file FILE",
            file=sys.stderr,
        )
    else:
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
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Create a user and their auth key (shown once)."""
    key_file = _check_key_file(key_file, replace=False)  # a new key never overwrites a file: it may be someone's key
    user = _with_context(
        data_dir,
        lambda ctx: _create_with_key(
            ctx, key_file, lambda tx: accounts.create_user(tx, email.strip(), is_admin=admin, actor=_actor())
        ),
        database,
        encryption_key_file,
    )
    _emitted(user.email, key_file)


@users_app.command("list")
def users_list(
    data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """List users."""
    users = _with_context(data_dir, lambda ctx: ctx.store.users(), database, encryption_key_file)
    print(f"{'EMAIL':<40} {'ROLE':<6} CREATED")
    for u in users:
        role = "admin" if u.is_admin else "user"
        print(f"{printable(u.email):<40} {role:<6} {timestamp(u.created_at):%Y-%m-%d %H:%M}")


@users_app.command("remove")
def users_remove(
    email: str, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Remove a user; the Spaces they own are deleted."""
    user = _with_context(
        data_dir, lambda ctx: admin.remove_user(ctx, email.strip(), actor=_actor()), database, encryption_key_file
    )
    print(f"Removed {user.email}.")


@users_app.command("reset-key")
def users_reset_key(
    email: str,
    key_file: KeyFile = None,
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Replace a user's auth key; their sessions end."""
    key_file = _check_key_file(key_file, replace=True)  # the user's old key file is the natural place for the new key
    user = _with_context(
        data_dir,
        lambda ctx: _create_with_key(ctx, key_file, lambda tx: accounts.reset_key(tx, email.strip(), actor=_actor())),
        database,
        encryption_key_file,
    )
    _emitted(user.email, key_file)


# -- templates ------------------------------------------------------------------------------


@templates_app.command("add")
def templates_add(
    name: str,
    compute: Annotated[int, typer.Option("--compute", help="Compute units a running Space of it uses.")],
    storage: Annotated[int, typer.Option("--storage", help="Storage units every Space of it uses.")],
    default: Annotated[bool, typer.Option("--default", help="New Spaces get it when they name none.")] = False,
    description: Annotated[str, typer.Option("--description", help="One line for people picking one.")] = "",
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Add a Space template."""
    made = _with_context(
        data_dir,
        lambda ctx: templates.add(
            ctx, name, compute=compute, storage=storage, default=default, description=description, actor=_actor()
        ),
        database,
        encryption_key_file,
    )
    print(f"Added the template {made.name}{' (the default)' if made.is_default else ''}.")


@templates_app.command("list")
def templates_list(
    data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """List Space templates."""
    found = _with_context(data_dir, lambda ctx: ctx.store.templates(), database, encryption_key_file)
    if not found:
        print("No templates: new Spaces cost nothing. Add one with `pair-broker templates add`.", file=sys.stderr)
        return
    print(f"{'NAME':<24} {'COMPUTE':>7} {'STORAGE':>7} DEFAULT  DESCRIPTION")
    for t in found:
        print(
            f"{t.name:<24} {t.compute_units:>7} {t.storage_units:>7} {'yes' if t.is_default else '':<7}  "
            f"{printable(t.description)}".rstrip()
        )


@templates_app.command("remove")
def templates_remove(
    name: str, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Remove a template; Spaces made from it keep its name and units."""
    _with_context(data_dir, lambda ctx: templates.remove(ctx, name, actor=_actor()), database, encryption_key_file)
    print(f"Removed the template {name}.")


@templates_app.command("set-default")
def templates_set_default(
    name: str, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Make a template the default one."""
    _with_context(data_dir, lambda ctx: templates.set_default(ctx, name, actor=_actor()), database, encryption_key_file)
    print(f"{name} is the default template.")


# -- groups ---------------------------------------------------------------------------------


@groups_app.command("add")
def groups_add(
    name: str, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Create a group."""
    _with_context(data_dir, lambda ctx: groups.add(ctx, name, actor=_actor()), database, encryption_key_file)
    print(f"Created the group {name}.")


@groups_app.command("list")
def groups_list(
    data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """List groups, their quotas and members."""
    found = _with_context(data_dir, lambda ctx: ctx.store.groups(), database, encryption_key_file)
    if not found:
        print("No groups yet. Create one with `pair-broker groups add NAME`.", file=sys.stderr)
        return
    for g in found:
        print(f"{g.name}  ({quotas.describe(g.quota)})")
        for email in g.members:
            print(f"  {printable(email)}")


@groups_app.command("remove")
def groups_remove(
    name: str, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Remove a group: its members lose the Spaces it was shared with, and its quota."""
    _with_context(data_dir, lambda ctx: groups.remove(ctx, name, actor=_actor()), database, encryption_key_file)
    print(f"Removed the group {name}.")


Members = Annotated[list[str], typer.Argument(metavar="EMAIL", help="People's emails.")]


@members_app.command("add")
def members_add(
    name: str,
    emails: Members,
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Add people to a group."""
    group = _with_context(
        data_dir, lambda ctx: groups.add_members(ctx, name, emails, actor=_actor()), database, encryption_key_file
    )
    print(f"{group.name}: {printable(', '.join(group.members)) or 'nobody'}.")


@members_app.command("remove")
def members_remove(
    name: str,
    emails: Members,
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Take people out of a group; they lose its Spaces at once."""
    group = _with_context(
        data_dir, lambda ctx: groups.remove_members(ctx, name, emails, actor=_actor()), database, encryption_key_file
    )
    print(f"{group.name}: {printable(', '.join(group.members)) or 'nobody'}.")


# -- quotas ---------------------------------------------------------------------------------


def _limit(option: str) -> Callable[[str | None], str | None]:
    def check(value: str | None) -> str | None:
        if value is None or value == "unlimited" or value.isdigit():
            return value
        raise typer.BadParameter(f"{value!r} is not a whole number or `unlimited`.", param_hint=option)

    return check


def _limit_option(option: str, what: str) -> Any:
    return typer.Option(
        option, metavar="N|unlimited", callback=_limit(option), help=f"Most {what}; `unlimited` unsets it."
    )


@quota_app.command("set")
def quota_set(
    email: Annotated[str | None, typer.Argument(help="The user's email (or pass --group).", show_default=False)] = None,
    group: Annotated[str | None, typer.Option("--group", help="A group's quota instead.")] = None,
    spaces: Annotated[str | None, _limit_option("--spaces", "Spaces (running or stopped)")] = None,
    compute: Annotated[str | None, _limit_option("--compute", "compute units of starting and running Spaces")] = None,
    storage: Annotated[str | None, _limit_option("--storage", "storage units of all Spaces")] = None,
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Set a user's or a group's limits (the others stay). A person's limit is their own plus
    their groups'; one set nowhere is unlimited."""
    if (email is None) == (group is None):
        raise PairError(
            "Name a user by email or a group with --group (one of them).", "pair-broker quota set EMAIL --compute 10"
        )
    given: dict[m.QuotaResource, str | None] = {"spaces": spaces, "compute": compute, "storage": storage}
    changes: quotas.Changes = {k: (None if v == "unlimited" else int(v)) for k, v in given.items() if v is not None}
    if not changes:
        raise PairError("Nothing to set.", "Pass --spaces, --compute or --storage (N, or unlimited).")
    if group is not None:
        limits = _with_context(
            data_dir,
            lambda ctx: quotas.set_for_group(ctx, group, changes, actor=_actor()),
            database,
            encryption_key_file,
        )
        print(f"group {group}: {quotas.describe(limits)}.")
    else:
        assert email is not None
        limits = _with_context(
            data_dir,
            lambda ctx: quotas.set_for_user(ctx, email.strip(), changes, actor=_actor()),
            database,
            encryption_key_file,
        )
        print(f"{email.strip().lower()}: {quotas.describe(limits)}.")


@quota_app.command("show")
def quota_show(
    email: str, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """A user's limits, where each comes from, and their usage (as `pair quota` shows them)."""

    async def report(ctx: Context) -> Any:
        return await quotas.report(ctx, await accounts.user_by_email(ctx, email))

    found = _with_context(data_dir, report, database, encryption_key_file)
    for line in found.lines:
        print(printable(line.summary()))


# -- access requests --------------------------------------------------------------------------


@requests_app.command("list")
def requests_list(
    show_all: Annotated[bool, typer.Option("--all", help="Decided ones too.")] = False,
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Pending access requests (oldest first); with --all, every request."""
    found = _with_context(
        data_dir, lambda ctx: ctx.store.access_requests(None if show_all else "pending"), database, encryption_key_file
    )
    if not found:
        print("No pending access requests." if not show_all else "No access requests.", file=sys.stderr)
        return
    for r in found:
        line = f"{r.id}  {timestamp(r.created_at):%Y-%m-%d %H:%M}  {r.state:<8} {r.email}"
        print(printable(f"{line}  {r.message}".rstrip() if r.message else line))


RequestRef = Annotated[str, typer.Argument(metavar="ID|EMAIL", help="The request's id, or its email.")]


@requests_app.command("approve")
def requests_approve(
    ref: RequestRef, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Approve: the account and a Space are made; the person's waiting `pair login --request` signs in."""

    async def approve(ctx: Context) -> Any:
        return await access_requests.approve(ctx, await access_requests.resolve_id(ctx, ref), actor=_actor())

    done = _with_context(data_dir, approve, database, encryption_key_file)
    print(f"Approved {done.id}: {done.email} has an account and the Space {done.space}.")


@requests_app.command("deny")
def requests_deny(
    ref: RequestRef, data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """Deny: the person's waiting `pair login --request` is told."""

    async def deny(ctx: Context) -> Any:
        return await access_requests.deny(ctx, await access_requests.resolve_id(ctx, ref), actor=_actor())

    done = _with_context(data_dir, deny, database, encryption_key_file)
    print(f"Denied {done.id} ({done.email}).")


# -- keys -----------------------------------------------------------------------------------


@keys_app.command("rotate")
def keys_rotate(
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
    discard_unreadable: Annotated[
        bool,
        typer.Option(
            "--discard-unreadable",
            help="First remove the sealed keys this encryption key cannot open (the key that sealed them is lost).",
        ),
    ] = False,
) -> None:
    """Add a new signing key. Tokens signed by older keys keep verifying until they expire."""

    async def rotate(ctx: Context) -> tuple[str, int]:
        try:
            return (await ctx.keyring.add_key()).kid, len(ctx.keyring.keys)
        except OSError as exc:
            raise data_dir_error(ctx.settings.keys_dir, exc) from exc

    kid, count = _with_context(
        data_dir, rotate, database, encryption_key_file, discard_unreadable_keys=discard_unreadable
    )
    print(f"New signing key {kid}; {count} key(s) published in the JWKS.")


@keys_app.command("list")
def keys_list(
    data_dir: DataDir = None, database: Database = None, encryption_key_file: EncryptionKeyFile = None
) -> None:
    """List signing keys, newest (the one that signs) first."""

    async def keys(ctx: Context) -> list[SigningKey]:
        return list(ctx.keyring.keys)

    for i, key in enumerate(_with_context(data_dir, keys, database, encryption_key_file)):
        print(f"{key.kid}  {timestamp(key.created_at):%Y-%m-%d %H:%M}  {'signing' if i == 0 else 'verifying'}")


# -- migrate --------------------------------------------------------------------------------


@app.command("migrate")
def migrate(
    data_dir: DataDir = None,
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="Move this SQLite broker's data (sqlite:///PATH/broker.db) into --to.", show_default=False
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option("--to", help="The PostgreSQL database (postgresql://…) to move --from into.", show_default=False),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Empty a --to database that holds data first (its data is lost).")
    ] = False,
) -> None:
    """Apply the database's schema migrations (serve does it on start too), or move a SQLite
    broker's data into PostgreSQL with --from and --to."""
    if source is None and target is None:
        _migrate_in_place(_settings(data_dir=data_dir, database=database))
        return
    if source is None or target is None:
        raise PairError("--from and --to go together.", "pair-broker migrate --from sqlite:///PATH --to postgresql://…")
    _move(source, target, replace, _settings(data_dir=data_dir, encryption_key_file=encryption_key_file))


def _migrate_in_place(settings: Settings) -> None:
    from broker.store.backends import open_store

    location = settings.database_location
    if isinstance(location, Path) and not location.is_file():
        raise DataDirError(
            f"No broker database at {location}.", f"{DATA_DIR_HINT} `pair-broker serve` creates one on its first start."
        )

    async def run() -> list[str]:
        store = await open_store(location)
        await store.close()
        return store.applied

    applied = _database_call(run)
    if applied:
        print(f"Applied {len(applied)} migration(s) to {shown(location)}: {', '.join(applied)}.")
    else:
        print(f"{shown(location)} is up to date.")


def _move(source: str, target: str, replace: bool, settings: Settings) -> None:
    from broker import move
    from broker.context import sealer_for
    from broker.sealed_keys import UnreadableKeys
    from broker.store.backends import DatabaseUrlError, locate

    try:
        src = locate(source if source.startswith("sqlite:") else Path(source).expanduser().resolve())
        dst = locate(target)
    except DatabaseUrlError as exc:
        raise PairError(f"--from or --to is not a usable database URL: {exc}.", MOVE_HINT) from None
    if not isinstance(src, Path) or not isinstance(dst, str):
        raise PairError(
            "Data moves from a SQLite broker (--from sqlite:///PATH) to PostgreSQL (--to postgresql://…).", MOVE_HINT
        )
    sealer = sealer_for(settings)
    if sealer is None:
        raise PairError(
            "The broker on PostgreSQL keeps its signing keys sealed with an encryption key, and none is set.",
            "Set PAIR_BROKER_ENCRYPTION_KEY (or --encryption-key-file) to the key the PostgreSQL brokers will "
            "use; make one with: openssl rand -base64 32",
        )
    try:
        moved = asyncio.run(
            move.move(src, dst, sealer=sealer, replace=replace, retain_seconds=settings.max_token_ttl + 3600)
        )
    except move.TargetNotEmpty as exc:
        raise PairError(
            str(exc), "Pass --replace to empty it first (what it holds is lost), or --to an empty database."
        ) from exc
    except UnreadableKeys as exc:
        raise PairError(
            f"The signing keys in {src} ({', '.join(exc.kids)}) do not open with this encryption key;"
            " nothing was moved.",
            "Give the encryption key that SQLite broker uses (PAIR_BROKER_ENCRYPTION_KEY).",
        ) from exc
    except (StoreUnavailable, SchemaTooNew) as exc:
        raise DataDirError(str(exc), exc.hint) from exc
    except StoreError as exc:
        raise PairError(str(exc), "Nothing was moved; see docs/operations.md.") from exc
    if moved.emptied:
        print(f"Emptied {shown(dst)} first ({sum(moved.emptied.values())} rows).")
    width = max((len(table) for table in moved.counts), default=0)
    for table, count in moved.counts.items():
        print(f"{table:<{width}} {count:>8} rows")
    if moved.sealed_files:
        print(f"Sealed {len(moved.sealed_files)} signing key(s) from {src.parent / 'signing-keys'} into the database.")
    print(
        f"Moved {src} into {shown(dst)}; every table's row count matches. Serve it with: "
        "pair-broker serve --database URL (and the same encryption key)."
    )


MOVE_HINT = "pair-broker migrate --from sqlite:///PATH/broker.db --to postgresql://USER@HOST/DB (docs/operations.md)"


def _database_call(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`work()` in an event loop of its own; a database that cannot be used said in one sentence."""
    try:
        return asyncio.run(work())
    except (StoreUnavailable, SchemaTooNew) as exc:
        raise DataDirError(str(exc), exc.hint) from exc
    except StoreError as exc:
        raise PairError(str(exc), "Nothing was changed; see docs/operations.md.") from exc


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
    database: Database = None,
    encryption_key_file: EncryptionKeyFile = None,
) -> None:
    """Show the audit log: who created, shared, connected to and deleted what, and when (UTC)."""
    since_at: int | None = None
    if since is not None:
        try:
            since_at = int(time.time()) - durations.parse(since)
        except PairError as exc:
            raise PairError(f"--since: {exc.message}", exc.hint) from exc
    entries = _with_context(
        data_dir,
        lambda ctx: ctx.store.audit_log(
            limit=limit, since=since_at, actor=actor or "", action=action or "", target=target or ""
        ),
        database,
        encryption_key_file,
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
    # A container's host name and people's text reach the operator's terminal: escaped, never obeyed.
    shown = [(e.at, [printable(v) for v in (e.actor, e.action, e.target, e.detail)]) for e in entries]
    widths = [max(len(cells[i]) for _, cells in shown) for i in range(3)]
    for at, cells in shown:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)] + cells[3:]
        print(f"{timestamp(at):%Y-%m-%d %H:%M:%S}  " + "  ".join(padded).rstrip())


def main(argv: list[str] | None = None) -> None:
    os.umask(0o077)  # the database, its WAL and every key file: readable by the broker's user only
    ours = logging.getLogger("pair.broker")
    if not ours.handlers:  # admin verbs print errors, not log lines (serve gives it uvicorn's handler)
        ours.addHandler(logging.NullHandler())
    runner.run(app, "pair-broker", argv)
