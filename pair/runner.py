"""Running a Typer command tree the project's way: `pair` and `pair-broker` print every failure
as one `error:` line and maybe a `hint:` line, never a traceback or a boxed panel.

Below `pair.cli`, so that the broker's command line shares it without importing pair's."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from typer.exceptions import TyperException

from pair.api.errors import PairError
from pair.report import error

__all__ = ["error", "run"]


def run(app: typer.Typer, prog_name: str, argv: list[str] | None = None) -> NoReturn:
    """Run `app` on `argv` (default: sys.argv[1:]) and exit: 0 on success, 1 after a PairError,
    2 for bad usage (click's convention), 130 when the person cancelled."""
    try:
        code = app(args=argv, prog_name=prog_name, standalone_mode=False)
    except PairError as exc:
        error(exc.message, exc.hint)
        sys.exit(1)
    except TyperException as exc:  # usage: an unknown option, a missing argument, a bad value
        ctx = getattr(exc, "ctx", None)
        if ctx is not None and exc.format_message() == ctx.get_help():
            print(exc.format_message(), file=sys.stderr)  # a group run without a command: its help
        else:
            error(exc.format_message(), f"Run `{ctx.command_path if ctx else prog_name} --help`.")
        sys.exit(getattr(exc, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        print("\nCancelled.", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
