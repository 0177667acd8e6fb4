"""Entry point. Dispatches before importing the CLI framework, so that the commands sshd and ssh
run per connection (`pair verify`, `pair spaces proxy`) start as fast as Python can, and
`pair spaces list [--json]` and `pair spaces connect` answer without building the command tree."""

from __future__ import annotations

import sys


def main() -> None:
    """The console script. Ctrl-C before a command's own handling is in place (while Python is
    still importing, ~0.3 s on a loaded machine) exits 130 quietly instead of a traceback, and
    output to a closed pipe (`pair spaces list | head`) ends it quietly (`closed_pipe`)."""
    try:
        try:
            _dispatch()
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not in Python's own flush at exit
    except KeyboardInterrupt:
        sys.stderr.write("\nCancelled.\n")
        sys.exit(130)
    except BrokenPipeError:
        closed_pipe()


def closed_pipe() -> None:
    """Exit 1 without a word when the reader of stdout went away (as Click and gh do): stdout is
    pointed at /dev/null so that Python's own flush at exit does not complain either (the
    recipe of https://docs.python.org/3/library/signal.html#note-on-sigpipe)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def _dispatch() -> None:
    if sys.argv[1:3] == ["spaces", "proxy"]:
        from pair.proxy import main as proxy

        sys.exit(proxy(sys.argv[3:]))
    if sys.argv[1:2] == ["verify"]:  # sshd's AuthorizedKeysCommand, as the launcher answers it
        from pair.verify import main as verify

        sys.exit(verify(sys.argv[2:]))
    if sys.argv[1:3] == ["spaces", "connect"]:
        from pair.cli import connecting

        if connecting.space_option(sys.argv[3:])[0]:  # else (--help, a bad --space) Typer answers
            _leave(connecting.main(sys.argv[3:]))
    if sys.argv[1:] in (["spaces", "list"], ["spaces", "list", "--json"]):  # pair.cli.listing.FAST_ARGV
        from pair.cli.listing import main as list_spaces

        sys.exit(list_spaces(sys.argv[1:]))
    from pair.cli.app import run

    run()


def _leave(code: int) -> None:
    """Exit with `code` once ssh's session is over, skipping the interpreter's teardown (freeing
    every module: 10-30 ms after each connection), which nothing of `connect`'s needs: its files
    are written and closed, its stream closed and its threads done."""
    import os
    from contextlib import suppress

    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # closed by the reader: nothing more to say there
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
