"""The Codespaces secret `PAIR_SPACE_KEY`, set through GitHub's own CLI (`gh`), never through a file.

`gh secret set NAME --app codespaces --repo OWNER/REPO` reads the value from standard input when
no `--body` is given (gh's manual), so the key never appears in a process list or shell history.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

from pair.api.errors import PairError
from pair.project.devcontainer import KEY_VARIABLE

SECRET = KEY_VARIABLE
REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")  # GitHub's OWNER/REPO
_GITHUB_REMOTE = re.compile(
    r"^(?:https://(?:[^@/]+@)?github\.com/|(?:ssh://)?git@github\.com[:/])"
    r"(?P<repo>[A-Za-z0-9-]+/[A-Za-z0-9._-]+?)(?:\.git)?/?$"
)
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")
TIMEOUT = 60.0


def check_repository(repo: str) -> str:
    """`repo` if it is GitHub's OWNER/REPO; raises PairError otherwise."""
    if not REPOSITORY.fullmatch(repo):
        raise PairError(f"{repo!r} is not a GitHub repository name.", "Pass --repo OWNER/REPO, e.g. --repo octo/app.")
    return repo


def read_key(path: Path) -> str:
    """The Space key in `path`, as pasted (pair.api.tokens.normalize: what pasting adds around it
    goes). Raises PairError if it cannot be read, SecretError (a PairError naming the cause) if
    it holds something other than a Space key."""
    from pair.api.tokens import SPACE_KEY, normalize

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PairError(
            f"Cannot read the key file {path}: {exc.strerror}.", "Pass a readable file to --key-file."
        ) from None
    return normalize(data, SPACE_KEY, source=str(path))


def check_key(key: str) -> str:
    """`key` as a Space key (normalized); SecretError naming the cause otherwise."""
    from pair.api.tokens import SPACE_KEY, normalize

    return normalize(key, SPACE_KEY, source="what was typed")


def gh_executable() -> str | None:
    return shutil.which("gh")


def _gh(gh: str, *args: str, cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [gh, *args],
            cwd=cwd,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess([gh, *args], 1, "", str(exc))


def gh_signed_in(gh: str) -> bool:
    """Whether `gh auth status` reports a signed-in account (exit status 0)."""
    return _gh(gh, "auth", "status").returncode == 0


def repository_from_remote(project: Path) -> str | None:
    """OWNER/REPO of the project's `origin` remote when it is on github.com, else None."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        result = subprocess.run(
            [git, "-C", str(project), "remote", "get-url", "origin"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _GITHUB_REMOTE.match(result.stdout.strip()) if result.returncode == 0 else None
    return match.group("repo") if match and REPOSITORY.fullmatch(match.group("repo")) else None


def repository(gh: str | None, project: Path) -> str | None:
    """The GitHub repository of `project`: gh's answer (`gh repo view`, which knows forks' chosen
    default), else the github.com `origin` remote; None if neither knows."""
    if gh is not None:
        result = _gh(gh, "repo", "view", "--json", "nameWithOwner", "--jq", ".nameWithOwner", cwd=project)
        name = result.stdout.strip()
        if result.returncode == 0 and REPOSITORY.fullmatch(name):
            return name
    return repository_from_remote(project)


def set_command(repo: str | None, key_file: Path | None) -> str:
    """The shell command that sets the secret by hand, with the value read from a file."""
    target = shlex.quote(repo) if repo else "OWNER/REPO"
    source = shlex.quote(str(key_file)) if key_file else "KEY_FILE"
    return f"gh secret set {SECRET} --app codespaces --repo {target} < {source}"


def set_secret(gh: str, repo: str, key: str) -> None:
    """Store `key` as the Codespaces secret PAIR_SPACE_KEY of `repo`, passing it on stdin.
    Raises PairError with gh's own last line if gh refuses."""
    result = _gh(gh, "secret", "set", SECRET, "--app", "codespaces", "--repo", check_repository(repo), stdin=key)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        said = _UNPRINTABLE.sub(" ", lines[-1]).strip()[:300] if lines else f"exit status {result.returncode}"
        raise PairError(
            f"gh could not set the Codespaces secret {SECRET} of {repo}: {said}",
            f"Check `gh auth status` (you need admin rights on the repository), or run: {set_command(repo, None)}",
        )
