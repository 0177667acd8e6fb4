"""`pair-broker`: Ctrl-C while Python is still importing exits 130 quietly, and output to a
closed pipe ends it quietly, as `pair` does (pair.__main__.closed_pipe)."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from broker.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("\nCancelled.\n")
        sys.exit(130)
    from pair.__main__ import closed_pipe

    try:
        try:
            cli()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        closed_pipe()


if __name__ == "__main__":
    main()
