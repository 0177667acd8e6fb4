"""The one place errors are printed, without the CLI framework (`pair.runner` and the commands
`pair.__main__` runs straight use it): `error: MESSAGE` and `hint: HINT` on stderr."""

from __future__ import annotations

import sys

from pair.printable import printable


def error(message: str, hint: str = "") -> None:
    """Print a failure as one `error:` line and maybe a `hint:` line (both may carry the broker's text)."""
    print(f"error: {printable(message)}", file=sys.stderr)
    if hint:
        print(f"hint: {printable(hint)}", file=sys.stderr)
