"""A stand-in for GitHub's CLI (`gh`) on PATH, for unit-level tests of `pair spaces init`: it
records every call (arguments and standard input) as a JSON line and answers the three commands
pair uses (`auth status`, `repo view`, `secret set`) as configured. Nothing reaches GitHub."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = """#!{python}
import json, sys
args = sys.argv[1:]
data = sys.stdin.read() if args[:2] == ["secret", "set"] else ""
with open({log!r}, "a") as log:
    log.write(json.dumps({{"args": args, "stdin": data}}) + "\\n")
if args[:2] == ["auth", "status"]:
    sys.exit(0 if {signed_in!r} else 1)
if args[:2] == ["repo", "view"]:
    if {repo!r}:
        print({repo!r})
        sys.exit(0)
    print("no git remotes found", file=sys.stderr)
    sys.exit(1)
if args[:2] == ["secret", "set"]:
    if {secret_error!r}:
        print({secret_error!r}, file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
sys.exit(2)
"""


@dataclass
class FakeGh:
    bin_dir: Path
    log: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def path(self) -> str:
        """A PATH with this gh and git, and nothing else of the machine's."""
        return str(self.bin_dir)


def tools_dir(directory: Path) -> Path:
    """A directory holding only `git` (for the remote), to put on PATH instead of the machine's."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool in ("git",):
        for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
            candidate = Path(folder) / tool
            if candidate.is_file() and os.access(candidate, os.X_OK):
                (directory / tool).symlink_to(candidate)
                break
    return directory


def install(directory: Path, *, signed_in: bool = True, repo: str = "octo/app", secret_error: str = "") -> FakeGh:
    """Write `gh` into `directory` (created, with git beside it); see FakeGh.calls for what it saw."""
    tools_dir(directory)
    log = directory.parent / f"{directory.name}-gh-calls.jsonl"
    script = directory / "gh"
    script.write_text(
        SCRIPT.format(python=sys.executable, log=str(log), signed_in=signed_in, repo=repo, secret_error=secret_error)
    )
    script.chmod(0o755)
    return FakeGh(directory, log)
