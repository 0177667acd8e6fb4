"""`pair spaces connect`, `proxy`, `up`, `down`, `sessions`, `kick`: using a Space over SSH."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from pair import known_hosts
from pair.api import readiness
from pair.api.errors import PairError
from pair.api.models import Space, SshKey, StreamInfo
from pair.cli import identities, ssh
from pair.cli.output import human_bytes, is_interactive, table
from pair.cli.resolve import choose_space, form, one_ref
from pair.cli.session import signed_in
from pair.cli.ssh_config import ssh_config
from pair.printable import printable

if TYPE_CHECKING:  # httpx loads only when a command talks to the broker
    from typer._click.core import Context as ClickContext

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


def parse_connect_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """`pair spaces connect [SPACE] [-- SSH_ARGS…]` from the raw words after `connect`: the Space
    is the first plain word before `--` (so `connect -- uptime` runs uptime in the only Space), and
    everything else, in order, is ssh's (`--space S` is the CLI's own option)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    before, after = argv[:cut], argv[cut + 1 :]
    space: str | None = None
    ssh_args: list[str] = []
    i = 0
    while i < len(before):
        word = before[i]
        if word == "--space":
            i += 2
            continue
        if word.startswith("--space="):
            i += 1
            continue
        if word.startswith("-") and word != "-":
            takes_value = len(word) == 2 and word[1] in SSH_OPTIONS_WITH_VALUE
            ssh_args += before[i : i + 2] if takes_value else [word]
            i += 2 if takes_value else 1
            continue
        if space is None:
            space = word
        else:
            ssh_args.append(word)
        i += 1
    return space, ssh_args + after


def _pick(spaces: list[Space], ref: str | None) -> Space:
    if ref is None and len(spaces) > 1 and is_interactive():
        for i, s in enumerate(spaces, 1):
            print(f"  {i}. {s.name}  ({s.role}, {s.owner}, {s.state})")
        choice = int(typer.prompt("Connect to which Space", type=int))
        if 1 <= choice <= len(spaces):
            return spaces[choice - 1]
        raise PairError(f"There is no Space number {choice}.")
    return choose_space(spaces, ref, "connect")


def _check_ready(client: Client, space: Space) -> list[SshKey]:
    """Refuse early, with the reason, what ssh would only fail at; returns the person's keys."""
    refused = readiness.refusal(space)  # the relay's own words; a Space on its way up is waited for there
    if refused is not None:
        raise PairError(refused.message, refused.hint)
    if not space.container or not space.container.host_keys:
        raise PairError(
            f'The container of "{space.name}" reported no SSH host key, so it cannot be verified.',
            "Run `/opt/pair/pair spaces bootstrap` in the container once sshd is installed.",
        )
    keys = client.ssh_keys()
    if not keys:
        raise PairError(
            "You have no SSH key registered, so the Space cannot let you in.",
            "Add one with `pair keys add` (default: ~/.ssh/id_ed25519.pub).",
        )
    return keys


def _forward(stream: IO[bytes], seen: list[bytes]) -> None:
    """Pass ssh's stderr through, remembering it so a host-key mismatch can be explained."""
    for line in iter(stream.readline, b""):
        seen.append(line)
        sys.stderr.buffer.write(line)
        sys.stderr.flush()


class _Signals:
    """While ssh runs: Ctrl-C is ssh's to handle (the terminal sends it to ssh too, and ssh decides:
    a remote shell gets it, `-N` exits), and SIGTERM/SIGHUP are passed on to ssh, so stopping
    `pair spaces connect` stops its ssh and closes its forwards. Installed before ssh starts, so a
    signal in between is not lost: it is passed on once ssh is there."""

    FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.pending: list[int] = []
        self.received: list[int] = []
        self.saved: dict[int, Any] = {}  # whatever signal.signal returned, to put back

    def _forward(self, signum: int, _frame: object) -> None:
        self.received.append(signum)
        if self.child is None:
            self.pending.append(signum)
            return
        with suppress(ProcessLookupError):
            self.child.send_signal(signum)

    def adopt(self, child: subprocess.Popen[bytes]) -> None:
        self.child = child
        for signum in self.pending:
            with suppress(ProcessLookupError):
                child.send_signal(signum)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():  # Python takes signals there only
            # A handler rather than SIG_IGN for SIGINT: an ignored signal would be inherited by ssh.
            self.saved[signal.SIGINT] = signal.signal(signal.SIGINT, lambda _s, _f: None)
            for signum in self.FORWARDED:
                self.saved[signum] = signal.signal(signum, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


def _write_known_hosts(spaces: list[Space]) -> None:
    try:
        ssh.write_known_hosts(spaces)
    except OSError as exc:
        raise PairError(
            f"Cannot write {known_hosts.path()}: {exc.strerror or exc}.", "Check PAIR_CONFIG_DIR and its permissions."
        ) from exc


def connect(
    ctx: typer.Context,
    space_option: Annotated[
        str | None,
        typer.Option("--space", metavar="SPACE", help="The same as the SPACE argument.", show_default=False),
    ] = None,
) -> None:
    """Open an SSH shell in a Space through the broker; arguments after `--` go to ssh.

    SPACE is its name or sp_… id; without it, the only Space you can see."""
    positional, ssh_args = parse_connect_args(ctx.meta.get(RAW_ARGS, list(ctx.args)))
    ref = one_ref(positional, space_option, "connect")
    program = shutil.which("ssh")
    if program is None:
        raise PairError("The ssh client is not installed.", "Install OpenSSH (e.g. `apt-get install openssh-client`).")
    client, _ = signed_in()
    with client:
        spaces = client.spaces()
        target = _pick(spaces, ref)
        registered = _check_ready(client, target)
        _write_known_hosts(spaces)
    keys = identities.private_keys(k.fingerprint for k in registered)
    # pair's own connection: no multiplexing, so its stderr (pair's reasons) reaches the person
    # and SIGTERM ends the connection that carries its forwards, not a master's client.
    options = ssh.option_args([*ssh.ssh_options(target, keys), ("ControlMaster", "no"), ("ControlPath", "none")])
    extra_options, remote_command = split_ssh_args(ssh_args)
    command = [program, *options, *extra_options, f"{target.name}.pair", *remote_command]
    with _Signals() as signals:
        proc = subprocess.Popen(command, stderr=subprocess.PIPE)
        signals.adopt(proc)
        assert proc.stderr is not None
        seen: list[bytes] = []
        forwarder = threading.Thread(target=_forward, args=(proc.stderr, seen), daemon=True)
        forwarder.start()
        code = proc.wait()
    forwarder.join(2)
    if code == 255 and any(HOST_KEY_CHANGED.encode() in line for line in seen):
        raise PairError(
            f'The Space "{target.name}" answered with a different SSH host key than its container '
            "reported at bootstrap.",
            "If the container was rebuilt, bootstrap it again; otherwise someone may be intercepting the connection.",
        )
    if code == 255 and any(b"Host key verification failed" in line for line in seen):
        raise PairError(
            f'ssh found no host key of "{target.name}" that it could check against {known_hosts.path()}.',
            "If the container's sshd has a new kind of host key, bootstrap the container again so the broker "
            "records it.",
        )
    if signals.received:  # stopped from outside: say so in the shell's way, whatever ssh answered
        raise typer.Exit(128 + signals.received[0])
    raise typer.Exit(128 - code if code < 0 else code)  # ssh killed by a signal: 128+N too


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


def _set_service(ref: str | None, *, up: bool) -> None:
    client, _ = signed_in()
    with client:
        target = choose_space(client.spaces(), ref, "up" if up else "down", owned=True)
        changed = client.up(target.id) if up else client.down(target.id)
        result = _wait_for(client, changed, ("running",) if up else ("stopped",))
    if up and (why := readiness.ssh_failure(result)):
        raise PairError(f'SSH did not start in "{result.name}": {why}', readiness.ssh_down(result).hint)
    print(f"space {result.id} is {result.state}")


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
    """End a person's open SSH sessions in a Space you own (they can reconnect if still shared)."""
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
