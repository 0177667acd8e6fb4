"""`pair web`: the broker's web page in a browser, signed in as you through a one-time link."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from pair.cli.session import signed_in
from pair.printable import printable


def has_display() -> bool:
    """Whether a browser can open here without taking over the terminal (lynx, w3m)."""
    if sys.platform in ("darwin", "win32") or os.environ.get("BROWSER"):  # Codespaces sets BROWSER
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def web(
    open_browser: Annotated[
        bool | None,
        typer.Option(
            "--open/--print",
            help="Open the link in a browser, or print it. [default: open when there is a display]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the Spaces page in your browser, signed in (a one-time link, valid for a few minutes)."""
    client, _ = signed_in()
    with client:
        link = client.web_link()
    if has_display() if open_browser is None else open_browser:
        import webbrowser  # only when used: it is slow to import

        if webbrowser.open(link.url):
            print("Opened the Spaces page in your browser.", file=sys.stderr)
            return
        print("Could not start a browser here.", file=sys.stderr)
    minutes = max(1, round(link.ttl_seconds / 60))
    print(
        f"Open this link within {minutes} minute{'' if minutes == 1 else 's'} to sign in (it works once):",
        file=sys.stderr,
    )
    print(printable(link.url))
