"""A real Debian root as a local "container", for trying the whole journey on one machine without
Docker: `scripts/local-container.sh` runs this (as root: it mounts an overlay in its own mount
namespace, as tests/install/debian.py does for the tests).

It does what a Codespace does with pair's Feature and the Codespaces secret PAIR_SPACE_KEY:
installs pair with install.sh (fetched from the broker the key names, as `curl BROKER/install.sh
| sh` would), starts supervisord (postStartCommand) and bootstraps (postAttachCommand) with the
key in the environment and CODESPACE_NAME set to `--name`, so the container becomes the Space of
that name. Then it holds the container until Ctrl-C (or SIGTERM), and throws it away: a signal at
any point (while it waits, or still installing) ends every process in the root's mount namespace,
which takes its mounts with it, and removes the folder; a second signal meanwhile is ignored, so
the clean-up is never cut short.

The key travels in the environment only: it is never written into the root or printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path

from pair.api.errors import PairError
from pair.api.grammar import NAME_RULE, is_space_name
from pair.api.tokens import SPACE_KEY, normalize, space_key_broker
from pair.container.configs import START_SUPERVISORD

READY = "ready:"  # the line that says the Space is up (tests wait for it)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/local-container.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the container's name, and so its Space's (CODESPACE_NAME)")
    parser.add_argument("--key-file", type=Path, help="a file holding the Space key [default: $PAIR_SPACE_KEY]")
    parser.add_argument("--ssh-port", type=int, default=0, help="the port of its sshd [default: a free one]")
    parser.add_argument("--package", default="", help="install.sh --package (default: the broker's own wheel)")
    parser.add_argument("--work", type=Path, help="where the root's overlay goes [default: a new folder in /var/tmp]")
    return parser


def _key(args: argparse.Namespace) -> str:
    if args.key_file is not None:
        try:
            pasted: str | bytes = args.key_file.read_bytes()
        except OSError as exc:
            raise PairError(f"Cannot read {args.key_file}: {exc.strerror}.", "Pass the file --output wrote.") from exc
        return normalize(pasted, SPACE_KEY, source=str(args.key_file))
    if os.environ.get("PAIR_SPACE_KEY", "").strip():
        return normalize(os.environ["PAIR_SPACE_KEY"], SPACE_KEY, source="PAIR_SPACE_KEY")
    raise PairError(
        "No Space key: pass --key-file FILE or set PAIR_SPACE_KEY.",
        "Create one on the owner's side: `pair spaces keys create --name NAME --output FILE`.",
    )


def _step(what: str) -> None:
    print(f"local-container: {what}", flush=True)


class Stopped(Exception):
    """A SIGINT or SIGTERM: unwinds whatever runs (a command in the root is killed) into the clean-up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop_on_signals() -> None:
    """The first SIGINT or SIGTERM raises Stopped; from then on both are ignored (the clean-up runs)."""

    def stop(signum: int, _frame: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


def run(args: argparse.Namespace) -> int:
    # A `make run` venv has no pytest: this support code imports none (tests/install/test_local_container.py).
    from tests.install.debian import BASE_VERSION, CACHE, debian
    from tests.support.tools import find_tool

    if not is_space_name(args.name):
        raise PairError(f"{args.name!r} is not a Space name.", f"Use {NAME_RULE}.")
    if os.geteuid() != 0:
        raise PairError("scripts/local-container.sh needs root (it mounts a Debian root).", "Run it with sudo.")
    needed = ("unshare", "nsenter") + (() if (CACHE / BASE_VERSION).is_dir() else ("debootstrap",))
    missing = [tool for tool in needed if not find_tool(tool)]
    if missing:
        raise PairError(
            f"scripts/local-container.sh needs {' and '.join(missing)}, which this machine lacks.",
            "Install them: apt-get install -y debootstrap util-linux.",
        )
    key = _key(args)
    broker = space_key_broker(key)
    port = args.ssh_port or _free_port()
    work = args.work or Path(tempfile.mkdtemp(prefix=f"pair-{args.name}-", dir="/var/tmp"))
    _step(f"a Debian 12 root in {work} (debootstrap once, cached in /var/cache/pair-tests)")
    with debian(work) as root:
        with urllib.request.urlopen(f"{broker}/install.sh", timeout=30) as response:  # as `curl … | sh`
            script = response.read().decode()
        env = {"PAIR_SPACE_KEY": key, "CODESPACE_NAME": args.name}
        _step(f"install.sh from {broker} (sshd on port {port})")
        options = ["--ssh-port", str(port), *(["--package", args.package] if args.package else [])]
        installed = root.run("sh", "-s", "--", *options, input=script, env=env, timeout=900)
        if installed.returncode != 0:
            sys.stdout.write(installed.stdout)
            sys.stderr.write(installed.stderr)
            return 1
        sys.stdout.write("".join(ln for ln in installed.stdout.splitlines(True) if ln.startswith("pair:")))
        _step("supervisord (postStartCommand)")
        root.ok("sh", "-c", START_SUPERVISORD, env=env)  # as a Codespace: the secret is in its environment
        booted = root.run("/opt/pair/pair", "spaces", "bootstrap", env=env)  # postAttachCommand
        sys.stdout.write(booted.stdout)
        if booted.returncode != 0:
            sys.stderr.write(booted.stderr)
            return 1
        _step(f"{READY} the container {args.name} is a Space; teammates: pair spaces connect {args.name}")
        _step("Ctrl-C stops and removes it.")
        try:
            while True:
                signal.pause()
        except Stopped:
            _step("stopping")
    _step(f"stopped: {work} and everything that ran in it are gone")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _stop_on_signals()
    try:
        return run(args)
    except Stopped as stopped:  # before the container was ready: `debian` has cleaned up
        print(f"local-container: stopped ({stopped}) before the container was ready; nothing is left", flush=True)
        return 128 + stopped.signum
    except PairError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
