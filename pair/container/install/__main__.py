"""`python -I -m pair.container.install install|uninstall …`: what install.sh runs once pair is in
its virtualenv. People run install.sh; its options are documented in docs/install.md.

    install --prefix DIR --ssh-port N --ssh-user USER --sshd PATH [--broker-url URL]
            [--token-source LABEL] [--space-key-source LABEL] [--keep-space-key true|false]
            [--changes N] [--dry-run]   (the Space token on standard input, a Space key in
                                          the environment variable PAIR_INSTALL_SPACE_KEY)
    uninstall --prefix DIR [--dry-run]

install.sh validated every value already; they are checked again here against the same
grammar, since they end up in sshd and supervisord configs. The token is judged by
pair.api.tokens, the parser `pair spaces bootstrap` uses. Output and exit status are install.sh's:
`pair: …` lines, `pair: error: …` and `pair: hint: …` on standard error with status 1.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pair.api.errors import PairError
from pair.api.tokens import MAX_PASTE, SPACE_KEY, SPACE_TOKEN, normalize
from pair.container.configs import WITHOUT_SECRETS
from pair.container.install.layout import Layout
from pair.container.install.plan import Host, Options, install_plan, supervisord_running, uninstall_plan
from pair.container.install.steps import Output, carry_out

_PREFIX = re.compile(r"(/[A-Za-z0-9._-]+)+")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")
_URL = re.compile(r"https?://[A-Za-z0-9.:/_~%-]+")


def _grammar(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value) or ".." in value:
            raise argparse.ArgumentTypeError(f"not {what}: {value!r}")
        return value

    return check


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1-65535): {value!r}")
    return int(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pair.container.install", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install pair's files around its virtualenv")
    uninstall = commands.add_parser("uninstall", help="remove what install.sh installed")
    for sub in (install, uninstall):
        sub.add_argument("--prefix", type=_grammar(_PREFIX, "a plain absolute path"), default="/opt/pair")
        sub.add_argument("--dry-run", action="store_true", help="print every step; change nothing")
    install.add_argument("--ssh-port", type=_port, default=2222)
    install.add_argument("--ssh-user", type=_grammar(_USER, "a user name"), default="root")
    install.add_argument("--sshd", default="", help="the sshd install.sh found")
    install.add_argument("--broker-url", type=lambda v: v and _grammar(_URL, "an http(s) URL")(v), default="")
    install.add_argument("--token-source", default="standard input", help="where the token came from, for messages")
    install.add_argument("--changes", type=int, default=0, help="how many changes install.sh made before")
    install.add_argument("--space-key-source", default="PAIR_SPACE_KEY", help="where the key came from, for messages")
    install.add_argument(
        "--keep-space-key", choices=("true", "false"), default="false", help="keep the key 0600 for the first bootstrap"
    )
    return parser


def _token(source: str) -> str:
    """The token on standard input, normalized; "" if there is none (blank, as for bootstrap)."""
    pasted = sys.stdin.buffer.read(MAX_PASTE * 4 + 4)
    if not pasted.strip(b" \t\r\n\x00"):
        return ""
    return normalize(pasted, SPACE_TOKEN, source=source)


def _space_key(source: str) -> str:
    """The Space key install.sh put in the environment, normalized; "" if none. Removed from the
    environment here, so nothing this process starts inherits it."""
    pasted = os.environ.pop(SPACE_KEY_VARIABLE, "")
    if not pasted.strip():
        return ""
    return normalize(pasted, SPACE_KEY, source=source)


SPACE_KEY_VARIABLE = "PAIR_INSTALL_SPACE_KEY"


def install(args: argparse.Namespace, output: Output) -> None:
    layout = Layout(prefix=Path(args.prefix))
    options = Options(
        space_key=_space_key(args.space_key_source),
        space_key_source=args.space_key_source,
        keep_space_key=args.keep_space_key == "true",
        ssh_port=args.ssh_port,
        ssh_user=args.ssh_user,
        token=_token(args.token_source),
        token_source=args.token_source,
        broker_url=args.broker_url.rstrip("/"),
    )
    plan = install_plan(options, layout, Host.probe(layout, args.sshd, args.ssh_user))
    done = args.changes + carry_out(plan, dry_run=args.dry_run, created=layout.created, output=output)
    if args.dry_run:
        output.log(f"dry run: {done} change(s) would be made; nothing was changed.")
    elif done == 0:
        output.log(f"pair is already installed in {layout.prefix}; nothing to change.")
    else:
        installed = f"pair is installed in {layout.prefix} ({done} change(s))"
        output.log(f"{installed}. sshd will listen on port {args.ssh_port}.")
        output.log(f"next: {WITHOUT_SECRETS} supervisord -c {layout.supervisord_conf}   (postStartCommand), then")
        output.log(f"      {layout.launcher} spaces bootstrap           (postAttachCommand)")


def uninstall(args: argparse.Namespace, output: Output) -> None:
    layout = Layout(prefix=Path(args.prefix))
    host = Host(supervisord_running=supervisord_running(layout))
    done = carry_out(uninstall_plan(layout, host), dry_run=args.dry_run, created=layout.created, output=output)
    if args.dry_run:
        output.log(f"dry run: {done} change(s) would be made; nothing was changed.")
    elif done == 0:
        output.log(f"pair is not installed in {layout.prefix}; nothing to remove.")
    else:
        output.log(
            f'removed pair ({done} change(s)). Python, openssh-server and the login user\'s "*" password field stay.'
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    output = Output()
    try:
        (install if args.command == "install" else uninstall)(args, output)
    except PairError as exc:
        print(f"pair: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"pair: hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
