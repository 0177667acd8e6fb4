"""`pair-broker`: Ctrl-C while Python is still importing exits 130 quietly, and output to a
closed pipe ends it quietly, as `pair` does (pair.__main__.closed_pipe, which the broker may not
import: docs/architecture.md lists what it takes from pair)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from broker.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("\nCancelled.\n")
        sys.exit(130)
    try:
        try:
            cli()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        closed_pipe()


def closed_pipe() -> None:
    """Exit 1 without a word: the reader of stdout went away (stdout to /dev/null, so Python's
    own flush at exit does not complain either)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


if __name__ == "__main__":
    main()
