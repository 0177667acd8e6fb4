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

A broker whose certificate comes from a CA of your own is trusted the usual way
(docs/operations.md, "Certificate trust on clients and containers"): `SSL_CERT_FILE` (a PEM
file) or `SSL_CERT_DIR` (a hashed directory) given to the script is copied into the root and set,
pointing at the copy, for install.sh, supervisord (so the agent) and `pair spaces bootstrap` there,
as a container's environment would carry it; the script itself fetches install.sh with the same
trust (pair.tls).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from pair import tls
from pair.api.errors import PairError
from pair.api.grammar import NAME_RULE, is_space_name
from pair.api.tokens import SPACE_KEY, normalize, space_key_broker
from pair.container.configs import START_SUPERVISORD

if TYPE_CHECKING:
    from tests.install.debian import Chroot

READY = "ready:"  # the line that says the Space is up (tests wait for it)
# Where a CA given through SSL_CERT_FILE / SSL_CERT_DIR goes in the root (read-only for the container).
TRUST_IN_ROOT = {"SSL_CERT_FILE": "/etc/pair-local-container/ca.pem", "SSL_CERT_DIR": "/etc/pair-local-container/certs"}


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


def _trust() -> dict[str, Path]:
    """The CA this script's environment names (OpenSSL's SSL_CERT_FILE and SSL_CERT_DIR, as every
    pair client reads them), checked before anything is built: PairError when one names nothing
    readable of its kind."""
    found = {}
    for variable, kind in (("SSL_CERT_FILE", "file"), ("SSL_CERT_DIR", "directory")):
        value = os.environ.get(variable, "")
        if not value:
            continue
        path = Path(value)
        if not (path.is_file() if kind == "file" else path.is_dir()) or not os.access(path, os.R_OK):
            raise PairError(
                f"{variable} names {value}, which is not a {kind} this script can read.",
                f"Point {variable} at the broker's CA certificate"
                + (" (a PEM file)." if kind == "file" else " directory (prepared with `openssl rehash`)."),
            )
        found[variable] = path
    return found


def _copy_trust(root: Chroot, trust: dict[str, Path]) -> dict[str, str]:
    """Copy the CA into the root (Chroot.path: the host's view of it); the variables that point the
    container's programs at the copies."""
    env = {}
    for variable, source in trust.items():
        inside = TRUST_IN_ROOT[variable]
        target = root.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=False)  # a hashed link's certificate, not a dangling link
        else:
            shutil.copyfile(source, target)
        env[variable] = inside
    return env


def _install_sh(broker: str) -> str:
    """install.sh as `curl BROKER/install.sh` gets it, with pair's TLS trust (pair.tls): an untrusted
    certificate or a broker that does not answer is a PairError, not a traceback."""
    url = f"{broker}/install.sh"
    try:
        with urllib.request.urlopen(url, timeout=30, context=tls.verifying(url)) as response:
            return str(response.read().decode())
    except (OSError, ValueError) as exc:
        refused = tls.refusal(exc, broker)
        if refused is not None:
            raise refused from exc
        why = getattr(exc, "reason", None) or exc
        raise PairError(
            f"Cannot fetch install.sh from {broker}: {why}.",
            "Check that the broker the Space key names runs and that this machine reaches it.",
        ) from exc


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
    trust = _trust()
    port = args.ssh_port or _free_port()
    work = args.work or Path(tempfile.mkdtemp(prefix=f"pair-{args.name}-", dir="/var/tmp"))
    _step(f"a Debian 12 root in {work} (debootstrap once, cached in /var/cache/pair-tests)")
    with debian(work) as root:
        script = _install_sh(broker)  # as `curl … | sh`
        env = {"PAIR_SPACE_KEY": key, "CODESPACE_NAME": args.name, **_copy_trust(root, trust)}
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
