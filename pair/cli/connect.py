"""`pair spaces connect`, `proxy`, `up`, `down`, `sessions`, `kick`: using a Space over SSH."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Annotated

import typer

from pair.api import readiness
from pair.api.errors import PairError
from pair.api.models import Space, TunnelSession
from pair.cli import ssh
from pair.cli.output import human_bytes, is_interactive, table
from pair.cli.resolve import resolve_space
from pair.cli.session import signed_in
from pair.cli.ssh_config import ssh_config

if TYPE_CHECKING:  # httpx loads only when a command talks to the broker
    from pair.api.client import Client

HOST_KEY_CHANGED = "REMOTE HOST IDENTIFICATION HAS CHANGED"
SSH_OPTIONS_WITH_VALUE = set("BbcDEeFIiJLlmOoPpQRSWw")  # from ssh(1)'s synopsis


def split_ssh_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Split what follows `--` into ssh options and the remote command: `ssh [options] host [command]`."""
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        flag = args[i]
        # "-L 3000:…" takes the next word; "-L3000:…" and "-vA" (no value letter last) do not.
        takes_value = len(flag) == 2 and flag[1] in SSH_OPTIONS_WITH_VALUE
        i += 2 if takes_value else 1
    command = args[i + 1 :] if i < len(args) and args[i] == "--" else args[i:]
    return args[:i], command


def _pick(client: Client, ref: str | None) -> Space:
    spaces = client.spaces()
    if ref:
        return resolve_space(spaces, ref)
    if len(spaces) == 1:
        return spaces[0]
    if not spaces:
        raise PairError(
            "You cannot see any Space yet.",
            "Create one with `pair spaces authorize`, or ask to be added to one with `pair spaces share`.",
        )
    if is_interactive():
        for i, s in enumerate(spaces, 1):
            print(f"  {i}. {s.name}  ({s.role}, {s.owner}, {s.state})")
        choice = int(typer.prompt("Connect to which Space", type=int))
        if 1 <= choice <= len(spaces):
            return spaces[choice - 1]
        raise PairError(f"There is no Space number {choice}.")
    names = ", ".join(f"{s.name} ({s.id})" for s in spaces)
    raise PairError(f"Which Space? You can see several: {names}.", "Name one: `pair spaces connect NAME`.")


def _check_ready(client: Client, space: Space) -> None:
    refused = readiness.refusal(space)  # the relay's own words; a Space on its way up is waited for there
    if refused is not None:
        raise PairError(refused.message, refused.hint)
    if not space.container or not space.container.host_keys:
        raise PairError(
            f'The container of "{space.name}" reported no SSH host key, so it cannot be verified.',
            "Run `/opt/pair/pair spaces bootstrap` in the container once sshd is installed.",
        )
    if not client.ssh_keys():
        raise PairError(
            "You have no SSH key registered, so the Space cannot let you in.",
            "Add one with `pair keys add` (default: ~/.ssh/id_ed25519.pub).",
        )


def _forward(stream: IO[bytes], seen: list[bytes]) -> None:
    """Pass ssh's stderr through, remembering it so a host-key mismatch can be explained."""
    for line in iter(stream.readline, b""):
        seen.append(line)
        sys.stderr.buffer.write(line)
        sys.stderr.flush()


def connect(
    ctx: typer.Context,
    space: Annotated[str | None, typer.Argument(help="The Space (name or sp_… id); optional if you see one.")] = None,
) -> None:
    """Open an SSH shell in a Space through the broker; arguments after `--` go to ssh."""
    program = shutil.which("ssh")
    if program is None:
        raise PairError("The ssh client is not installed.", "Install OpenSSH (e.g. `apt-get install openssh-client`).")
    client, _ = signed_in()
    with client:
        target = _pick(client, space)
        _check_ready(client, target)
        ssh.write_known_hosts(client.spaces())
    options = [arg for key, value in ssh.ssh_options(target).items() for arg in ("-o", f"{key}={value}")]
    extra_options, remote_command = split_ssh_args(list(ctx.args))
    command = [program, *options, *extra_options, f"{target.name}.pair", *remote_command]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen: list[bytes] = []
    forwarder = threading.Thread(target=_forward, args=(proc.stderr, seen), daemon=True)
    forwarder.start()
    code = proc.wait()
    forwarder.join(2)
    if code == 255 and any(
        HOST_KEY_CHANGED.encode() in line or b"Host key verification failed" in line for line in seen
    ):
        raise PairError(
            f'The Space "{target.name}" answered with a different SSH host key than its container '
            "reported at bootstrap.",
            "If the container was rebuilt, bootstrap it again; otherwise someone may be intercepting the connection.",
        )
    raise typer.Exit(code)


def proxy(space_id: Annotated[str, typer.Argument(help="The Space's sp_… id.")]) -> None:
    """(ssh's ProxyCommand) carry one SSH connection through the broker's relay."""
    from pair.proxy import main

    raise typer.Exit(main([space_id]))


def _wait_for(client: Client, space: Space, states: tuple[str, ...], timeout: float = 20.0) -> Space:
    """Poll until the Space reaches one of `states`, or its agent reports that sshd failed (in two
    polls running: a report sent just before the agent heard the request is overtaken at once)."""
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


def _set_service(space: str, *, up: bool) -> None:
    client, _ = signed_in()
    with client:
        target = resolve_space(client.spaces(), space)
        changed = client.up(target.id) if up else client.down(target.id)
        result = _wait_for(client, changed, ("running",) if up else ("stopped",))
    if up and (why := readiness.ssh_failure(result)):
        raise PairError(f'SSH did not start in "{result.name}": {why}', readiness.ssh_down(result).hint)
    print(f"space {result.id} is {result.state}")


def up(space: Annotated[str, typer.Option("--space", help="The Space: sp_… id or name.")]) -> None:
    """Start SSH service in a Space you own (its container must be running)."""
    _set_service(space, up=True)


def down(space: Annotated[str, typer.Option("--space", help="The Space: sp_… id or name.")]) -> None:
    """Stop SSH service in a Space you own; open sessions end."""
    _set_service(space, up=False)


def sessions(
    space: Annotated[str, typer.Argument(help="The Space: sp_… id or name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """Open SSH sessions in a Space you own: who, from where, since when, bytes each way."""
    client, _ = signed_in()
    with client:
        target = resolve_space(client.spaces(), space)
        rows = client.sessions(target.id)
    if as_json:  # the same fields as the API's, times as in `list --json`
        print(json.dumps([_session_row(r) for r in rows], indent=2))
        return
    if not rows:
        print(f'Nobody is connected to "{target.name}".')
        return
    print(
        table(
            ("email", "from", "since", "in", "out"),
            [
                (
                    r.email,
                    r.client_address,
                    r.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    human_bytes(r.bytes_in),
                    human_bytes(r.bytes_out),
                )
                for r in rows
            ],
        )
    )


def _session_row(session: TunnelSession) -> dict[str, object]:
    return {
        "id": session.id,
        "email": session.email,
        "from": session.client_address,
        "since": session.opened_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bytes_in": session.bytes_in,
        "bytes_out": session.bytes_out,
    }


def kick(
    space: Annotated[str, typer.Argument(help="The Space: sp_… id or name.")],
    email: Annotated[str, typer.Argument(help="Whose sessions to end.")],
) -> None:
    """End a person's open SSH sessions in a Space you own (they can reconnect if still shared)."""
    client, _ = signed_in()
    with client:
        target = resolve_space(client.spaces(), space)
        client.kick(target.id, email)
    print(f'Ended {email}\'s sessions in "{target.name}".')


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(connect)
    app.command("ssh-config")(ssh_config)
    app.command()(proxy)
    app.command()(up)
    app.command()(down)
    app.command()(sessions)
    app.command()(kick)
