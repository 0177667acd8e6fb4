"""`pair-broker`: Ctrl-C while Python is still importing exits 130 quietly, as `pair` does."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from broker.cli import main as cli
    except KeyboardInterrupt:
        sys.stderr.write("\nCancelled.\n")
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
