"""The steps of an install plan, and the one loop that carries them out.

A plan is a list of steps. A `Change` alters the system: a dry run prints `would DOES` and does
nothing; a real run prints `DOES`, does it, and, for a change with `record`, adds that path to
PREFIX/created-by-install.sh, so that --uninstall removes exactly what install.sh created.
`Ok`, `Warn` and `Note` only speak; a `Check` runs a command that must succeed, in real runs only.
The output is install.sh's own: `pair: …` on standard output, `pair: warning: …` on standard error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pair.api.errors import PairError

NEW_SUFFIX = ".pair-new"  # a file being written, beside its final name, until it is renamed over it


class InstallError(PairError):
    """A step failed or the system refused it; the message says which and why."""


@dataclass(frozen=True)
class Ok:
    """Something already as it should be."""

    text: str


@dataclass(frozen=True)
class Warn:
    """Something install.sh cannot put right itself."""

    text: str


@dataclass(frozen=True)
class Note:
    """A line for the person, in dry and real runs alike."""

    text: str


@dataclass(frozen=True)
class Check:
    """A command that must succeed (real runs only); if not, `failure: OUTPUT` is the error."""

    argv: tuple[str, ...]
    failure: str


@dataclass(frozen=True, kw_only=True)
class Change:
    """One change to the system. `does` completes "would …"; `record` is a path to add to
    created-by-install.sh once it is done. `apply` returns a warning to print, or None."""

    does: str
    record: Path | None = None

    def apply(self) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class MakeDir(Change):
    path: Path
    mode: int

    def apply(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, self.mode)


@dataclass(frozen=True, kw_only=True)
class WriteFile(Change):
    """Replace `path` by `content` with `mode`, atomically: written beside it (0600 from the first
    byte), checked by `check` + [that file] if given (`sshd -t -f`), then renamed over it. A file
    the check refuses is deleted and nothing is replaced: the error is `refused: OUTPUT`."""

    path: Path
    content: str
    mode: int
    check: tuple[str, ...] = ()
    refused: str = ""

    def apply(self) -> None:
        new = self.path.with_name(self.path.name + NEW_SUFFIX)
        new.unlink(missing_ok=True)
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.content)
        if self.check:
            done = _run([*self.check, str(new)], capture=True)
            if done.returncode != 0:
                new.unlink()
                raise InstallError(f"{self.refused}: {done.stdout.strip() or f'exit status {done.returncode}'}")
        os.chmod(new, self.mode)
        os.replace(new, self.path)


@dataclass(frozen=True, kw_only=True)
class SetMode(Change):
    path: Path
    mode: int

    def apply(self) -> None:
        os.chmod(self.path, self.mode)


@dataclass(frozen=True, kw_only=True)
class Link(Change):
    path: Path
    target: Path

    def apply(self) -> None:
        os.symlink(self.target, self.path)


@dataclass(frozen=True, kw_only=True)
class Run(Change):
    """A command, its output passed through. If it fails: the warning `on_failure`, or, if that
    is empty, an error. `replaces` are deleted first (a half-made key pair, say)."""

    argv: tuple[str, ...]
    on_failure: str = ""
    replaces: tuple[Path, ...] = ()

    def apply(self) -> str | None:
        for path in self.replaces:
            path.unlink(missing_ok=True)
        done = _run(list(self.argv), capture=False)
        if done.returncode == 0:
            return None
        if self.on_failure:
            return self.on_failure
        raise InstallError(f"{self.argv[0]} failed (exit status {done.returncode}) while trying to {self.does}.")


@dataclass(frozen=True, kw_only=True)
class Remove(Change):
    """Delete a file or a symbolic link."""

    path: Path

    def apply(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(frozen=True, kw_only=True)
class RemoveDir(Change):
    """Delete a directory if it is empty (something else may have put files in it since)."""

    path: Path

    def apply(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


@dataclass(frozen=True, kw_only=True)
class RemoveTree(Change):
    path: Path

    def apply(self) -> None:
        shutil.rmtree(self.path)


Step = Ok | Warn | Note | Check | Change


@dataclass
class Output:
    """install.sh's way of speaking; flushed line by line, as the shell's printf was, so standard
    output and standard error keep their order in a build log."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def log(self, text: str) -> None:
        print(f"pair: {text}", file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(f"pair: warning: {text}", file=self.err, flush=True)


def carry_out(plan: Sequence[Step], *, dry_run: bool, created: Path, output: Output) -> int:
    """Print every step of `plan` and, unless `dry_run`, do it, in order; returns the number of
    changes. `created` is the record --uninstall reads. Raises InstallError when a step fails (the
    steps before it stay done: each leaves the system consistent, and a re-run finishes the job)."""
    changes = 0
    for step in plan:
        if isinstance(step, Ok):
            output.log(f"ok: {step.text}")
        elif isinstance(step, Warn):
            output.warn(step.text)
        elif isinstance(step, Note):
            output.log(step.text)
        elif isinstance(step, Check):
            if not dry_run:
                done = _run(list(step.argv), capture=True)
                if done.returncode != 0:
                    raise InstallError(f"{step.failure}: {done.stdout.strip() or f'exit status {done.returncode}'}")
        else:
            changes += 1
            if dry_run:
                output.log(f"would {step.does}")
                continue
            output.log(step.does)
            try:
                warning = step.apply()
            except OSError as exc:
                raise InstallError(f"Could not {step.does}: {exc.strerror or exc}.") from exc
            if warning:
                output.warn(warning)
            if step.record is not None:
                record(created, step.record)
    return changes


def recorded(created: Path) -> list[Path]:
    """The paths created-by-install.sh lists (absolute ones only), oldest first."""
    try:
        lines = created.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [Path(line) for line in lines if line.startswith("/")]


def record(created: Path, path: Path) -> None:
    """Add `path` to created-by-install.sh unless it is there already."""
    if path in recorded(created):
        return
    with created.open("a") as f:
        f.write(f"{path}\n")


def _run(argv: list[str], *, capture: bool) -> subprocess.CompletedProcess[str]:
    """`argv` with no standard input (install.sh never reads its own: `curl … | sh`); with
    `capture`, its standard output and error together, else both passed through."""
    sys.stdout.flush()
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise InstallError(f"Cannot run {argv[0]}: {exc.strerror or exc}.") from exc
