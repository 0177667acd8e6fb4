"""`pair spaces connect` without the CLI framework: `pair.__main__` runs it straight (the CLI's
start-up is time before ssh even starts; issue 10), and the Typer command calls the same function
for the forms the fast path leaves to Typer (`--help`, a malformed `--space`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import IO, TYPE_CHECKING, Any

from pair import known_hosts
from pair.api.errors import PairError
from pair.cli import identities, ssh
from pair.cli.output import is_interactive
from pair.cli.resolve import choose_space, one_ref
from pair.cli.session import signed_in

if TYPE_CHECKING:  # httpx loads only when a command talks to the broker
    from pair.api.client import Client
    from pair.api.models import Space, SshKey

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
        import typer  # only to ask, at a terminal

        try:
            choice = int(typer.prompt("Connect to which Space", type=int))
        except typer.Abort:  # Ctrl-C or end of input at the prompt
            raise KeyboardInterrupt from None
        if 1 <= choice <= len(spaces):
            return spaces[choice - 1]
        raise PairError(f"There is no Space number {choice}.")
    return choose_space(spaces, ref, "connect")


def _check_ready(client: Client, space: Space) -> list[SshKey]:
    """Refuse early, with the reason, what ssh would only fail at; returns the person's keys."""
    from pair.api import readiness

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


def _forward(stream: IO[bytes], seen: list[bytes], is_noise: Callable[[bytes], bool]) -> None:
    """Pass ssh's stderr through, remembering it so a host-key mismatch can be explained; lines
    `is_noise` picks (ssh's words for a refusal connect states itself) are left out."""
    for line in iter(stream.readline, b""):
        seen.append(line)
        if is_noise(line):
            continue
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


def _ssh_environment() -> dict[str, str] | None:
    """ssh's environment under the handoff: this one, with SHLVL at least 1. ssh runs its
    ProxyCommand with `$SHELL -c`, and with ProxyUseFdpass that shell's stdin is a socket; bash
    at shell level 1 (SHLVL unset or 0: started by a program, not from a terminal's shell) takes
    that for rshd's and reads ~/.bashrc first (bash(1), INVOCATION), which can take longer than
    the rest of the connection (pyenv init: 250 ms)."""
    level = os.environ.get("SHLVL", "")
    if level.isdigit() and int(level) >= 1:
        return None
    return {**os.environ, "SHLVL": "1"}


def connect(words: list[str], space_option: str | None) -> int:
    """`pair spaces connect`: `words` are those after `connect` as typed (`--` kept), `space_option`
    the value of `--space`. Runs ssh through the broker and returns the exit status to leave with
    (ssh's, or 128+N when a signal stopped it). Raises PairError."""
    from pair import tunnel
    from pair.cli import handoff  # sockets and temporary directories: not for `pair --help`

    positional, ssh_args = parse_connect_args(words)
    ref = one_ref(positional, space_option, "connect")
    program = shutil.which("ssh")
    if program is None:
        raise PairError("The ssh client is not installed.", "Install OpenSSH (e.g. `apt-get install openssh-client`).")
    client, session = signed_in()
    if handoff.supported():
        tunnel.preload()  # while the API answers
    with client:
        spaces = client.spaces()
        target = _pick(spaces, ref)
        registered = _check_ready(client, target)
        _write_known_hosts(spaces)
    keys = identities.private_keys(k.fingerprint for k in registered)
    # The stream opens here while ssh starts (pair.cli.handoff); `pair spaces proxy` where a
    # descriptor cannot be passed, or no private Unix socket can be made (a TMPDIR too long for
    # one, an XDG_RUNTIME_DIR that is not ours).
    stream: handoff.Handoff | None = None
    if handoff.supported():
        with suppress(OSError):
            stream = handoff.Handoff(session, target.id)
    seen: list[bytes] = []
    try:  # the rendezvous is removed however this ends (an ssh option that cannot be written too)
        # pair's own connection: no multiplexing, so its stderr (pair's reasons) reaches the person
        # and SIGTERM ends the connection that carries its forwards, not a master's client.
        fdpass = stream.proxy_command() if stream else None
        options = ssh.option_args(
            [*ssh.ssh_options(target, keys, fdpass), ("ControlMaster", "no"), ("ControlPath", "none")]
        )
        extra_options, remote_command = split_ssh_args(ssh_args)
        command = [program, *options, *extra_options, f"{target.name}.pair", *remote_command]
        with _Signals() as signals:
            proc = subprocess.Popen(command, stderr=subprocess.PIPE, env=_ssh_environment() if stream else None)
            signals.adopt(proc)
            if stream:  # ssh starts and runs fdpass.py while the stream opens
                stream.start(proc.pid)
            assert proc.stderr is not None
            is_noise = stream.is_noise if stream else lambda _line: False
            forwarder = threading.Thread(target=_forward, args=(proc.stderr, seen, is_noise), daemon=True)
            forwarder.start()
            code = proc.wait()
    finally:
        if stream:
            stream.close()
    forwarder.join(2)
    if stream and stream.error and code == 255:  # ssh stopped for want of the stream: say why
        raise stream.error
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
        return 128 + signals.received[0]
    return 128 - code if code < 0 else code  # ssh killed by a signal: 128+N too


def space_option(words: list[str]) -> tuple[bool, str | None]:
    """Whether `words` (after `connect`) can skip Typer, and the `--space` value they give: not
    for `--help`/`-h` before `--`, nor a `--space` without its value (Typer says what is wrong)."""
    cut = words.index("--") if "--" in words else len(words)
    before = words[:cut]
    value: str | None = None
    for i, word in enumerate(before):
        if word in ("--help", "-h"):
            return False, None
        if word == "--space":
            if i + 1 >= len(before) or value is not None:
                return False, None
            value = before[i + 1]
        elif word.startswith("--space="):
            if value is not None:
                return False, None
            value = word.removeprefix("--space=")
    return True, value


def main(words: list[str]) -> int:
    """`pair spaces connect WORDS…` from `pair.__main__` (when `space_option` says it can skip
    Typer): the exit status; errors printed as every pair command prints them (pair.report)."""
    from pair.report import error

    try:
        return connect(words, space_option(words)[1])
    except PairError as exc:
        error(exc.message, exc.hint)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("\nCancelled.", file=sys.stderr)
        return 130
