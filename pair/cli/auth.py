"""`pair login`, `pair logout`, `pair whoami`."""

from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from pair import __version__, config, files
from pair.api.errors import AuthError, BrokerUnreachable, PairError
from pair.cli.session import signed_in
from pair.printable import printable


def login(
    email: Annotated[str, typer.Argument(help="Your email on the broker.")],
    key_file: Annotated[
        Path | None, typer.Option("--key-file", help="File holding your auth key ('-' for stdin).")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="The broker's URL. [env: PAIR_URL]")] = None,
    request: Annotated[
        bool,
        typer.Option("--request", help="No account yet: ask the admins for one and wait until they decide."),
    ] = False,
    message: Annotated[str, typer.Option("--message", help="With --request: a word for the admins.")] = "",
) -> None:
    """Log in with the auth key your admin gave you; the session is saved 0600 under ~/.config/pair.
    Without an account, `--request` asks for one and signs you in once an admin approves."""
    broker = config.broker_url(url)
    if not broker:
        raise PairError("Which broker? No URL was given and none is saved.", "Pass --url URL, or set PAIR_URL.")
    if request:
        if key_file is not None:
            raise PairError(
                "--request is for people without an auth key; --key-file is for those with one.", "Pass one of them."
            )
        from pair.cli.access_request import request_access

        request_access(broker, email, message)
        return
    if message:
        raise PairError("--message goes with --request.", "Add --request, or drop --message.")
    key = _read_key(key_file)
    try:
        previous = config.load_session()
    except PairError:
        previous = None  # a damaged session file is about to be replaced
    from pair.api.client import Client  # httpx loads only when a command talks to the broker

    with Client(broker) as client:
        answer = client.login(email.strip(), key, client=f"pair {__version__} on {socket.gethostname()}")
    if previous and previous.url == broker:
        _revoke_quietly(previous)
    config.save_session(
        config.Session(
            url=broker, email=answer.user.email, token=answer.session_token, expires_at=answer.expires_at.isoformat()
        )
    )
    print(f"Logged in to {broker} as {printable(answer.user.email)}.")


KEY_FILE_HINT = "Pass the file your admin gave you with --key-file."


def _read_key(key_file: Path | None) -> str:
    if key_file is not None and str(key_file) == "-":
        key = files.read_small_stdin(what="the auth key", hint=KEY_FILE_HINT)
    elif key_file is not None:
        key = files.read_small_text(key_file, what="the key file", hint=KEY_FILE_HINT)
    elif sys.stdin.isatty():
        key = getpass.getpass("Auth key: ")
    else:
        key = files.read_small_stdin(what="the auth key", hint=KEY_FILE_HINT)
    key = key.strip()
    if not key:
        raise PairError("The auth key is empty.", KEY_FILE_HINT)
    return key


def _revoke_quietly(session: config.Session) -> None:
    from pair.api.client import Client

    try:
        with Client(session.url, token=session.token) as client:
            client.logout()
    except PairError:
        pass  # the old session may have expired already; it is being replaced either way


def logout() -> None:
    """Revoke this machine's session and forget it."""
    session = config.load_session()
    if session is None:
        print("You are not logged in.")
        return
    from pair.api.client import Client

    try:
        with Client(session.url, token=session.token) as client:
            client.logout()
    except AuthError:
        pass  # already expired or revoked: nothing left to revoke
    except BrokerUnreachable as exc:
        config.clear_session()
        raise PairError(
            f"Forgot the local session, but could not revoke it: {exc.message}",
            "It expires by itself; an admin can also reset your key.",
        ) from exc
    config.clear_session()
    print(f"Logged out of {session.url}.")


def whoami() -> None:
    """Show who you are logged in as, and where."""
    client, session = signed_in()
    with client:
        user = client.me()
    print(f"{printable(user.email)}{' (admin)' if user.is_admin else ''} on {session.url}")
