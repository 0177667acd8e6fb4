"""`pair spaces init [devcontainer|devfile]`: add pair to the project in a folder.

It edits the project's devcontainer.json and/or Devfile in place (pair.project: comments and layout
kept; nothing added twice), or creates one, and then, for Codespaces, offers to store a Space key as
the repository's `PAIR_SPACE_KEY` secret with `gh`. It never writes a secret into the project.
Everything is checked before the first file is written, so an error leaves the project as it was.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from pair.api.errors import PairError
from pair.cli.output import is_interactive
from pair.cli.space_keys import DEFAULT_EXPIRES, expiry
from pair.durations import humanize, parse


class Kind(str, Enum):
    devcontainer = "devcontainer"
    devfile = "devfile"


DESCRIPTIONS = {
    Kind.devcontainer: "devcontainer: .devcontainer/devcontainer.json (Codespaces, VS Code, the devcontainer CLI)",
    Kind.devfile: "devfile: devfile.yaml (Eclipse Che, OpenShift Dev Spaces, AWS CodeCatalyst)",
}


@dataclass
class Target:
    kind: Kind
    path: Path
    exists: bool


@dataclass
class Change:
    target: Target
    old: str
    new: str
    added: list[str]
    warnings: list[str]


def _shown(path: Path) -> str:
    """`path` relative to the current directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _kind_of_file(path: Path) -> Kind:
    if path.name.endswith(".json"):
        return Kind.devcontainer
    if path.suffix in (".yaml", ".yml"):
        return Kind.devfile
    raise PairError(
        f"Cannot tell whether {path} is a devcontainer.json or a Devfile.",
        "Name the kind: `pair spaces init devcontainer --file PATH` or `pair spaces init devfile --file PATH`.",
    )


def _ask_kind(project: Path) -> Kind:
    where = "This folder" if project.resolve() == Path.cwd() else _shown(project)
    print(f"{where} has no devcontainer.json and no devfile.yaml. pair can create either:")
    for number, description in enumerate(DESCRIPTIONS.values(), 1):
        print(f"  {number}. {description}")
    choices = {str(number): kind for number, kind in enumerate(Kind, 1)} | {kind.value: kind for kind in Kind}
    while True:
        answer = typer.prompt("Which one", default=Kind.devcontainer.value).strip().lower()
        if answer in choices:
            return choices[answer]
        print(f"Answer {', '.join(choices)}.")


def _targets(project: Path, kind: Kind | None, file: Path | None) -> tuple[list[Target], list[str]]:
    """What to edit or create, and notes about configurations left alone."""
    from pair.project import devcontainer, devfile

    if file is not None:
        return [Target(kind or _kind_of_file(file), file, file.is_file())], []
    notes: list[str] = []
    found: list[Target] = []
    if kind in (None, Kind.devcontainer):
        configs = devcontainer.find(project)
        primary = bool(configs) and configs[0] in (project / devcontainer.DEFAULT_PATH, project / ".devcontainer.json")
        if primary or len(configs) == 1:
            found.append(Target(Kind.devcontainer, configs[0], True))
            if len(configs) > 1:
                others = ", ".join(_shown(p) for p in configs[1:])
                notes.append(f"Also found {others}: add pair there with `pair spaces init --file PATH`.")
        elif configs:
            listed = ", ".join(_shown(p) for p in configs)
            raise PairError(
                f"This project has several dev container configurations: {listed}.", "Pick one with --file PATH."
            )
    if kind in (None, Kind.devfile):
        files = devfile.find(project)
        if files:
            found.append(Target(Kind.devfile, files[0], True))
    if found:
        return found, notes
    if kind is None:
        kind = _ask_kind(project) if is_interactive() else Kind.devcontainer
    path = project / (devcontainer.DEFAULT_PATH if kind is Kind.devcontainer else devfile.NAMES[0])
    return [Target(kind, path, False)], notes


def _change(target: Target, project: Path, component: str | None) -> Change:
    from pair.project import devcontainer, devfile
    from pair.project.jsonc import EditCheckFailed

    name = _shown(target.path)
    if target.exists:
        try:
            old = target.path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise PairError(f"Cannot read {name}: {exc.strerror}.") from None
        except UnicodeDecodeError:
            raise PairError(
                f"{name} is not UTF-8 text.", "Save it as UTF-8, then run `pair spaces init` again."
            ) from None
        try:
            if target.kind is Kind.devcontainer:
                outcome = devcontainer.add_pair(old, name)
            else:
                outcome = devfile.add_pair(old, name, component)
        except EditCheckFailed as exc:  # a defect of pair's, caught before anything was written
            raise PairError(
                f"pair could not add itself to {name} safely ({exc}); nothing was written.",
                "Add the lines docs/install.md shows by hand, and please report this with the file.",
            ) from None
        return Change(target, old, outcome.text, outcome.added, outcome.warnings)
    folder = project.resolve().name or "project"
    new = devcontainer.new_config(folder) if target.kind is Kind.devcontainer else devfile.new_devfile(folder)
    return Change(target, "", new, [], [])


def _write(path: Path, text: str) -> None:
    """Replace `path` atomically (a symlink is written through), keeping its permissions."""
    from pair.files import write_private  # atomic, with the mode given

    path = path.resolve() if path.is_symlink() else path
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_private(path, text.encode("utf-8"), mode=mode)
    except OSError as exc:
        raise PairError(f"Cannot write {_shown(path)}: {exc.strerror}.") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _report(change: Change) -> None:
    name = _shown(change.target.path)
    if not change.target.exists:
        print(f"Created {name} with pair set up.")
    elif change.new == change.old:
        print(f"pair is already set up in {name}; nothing to change.")
    else:
        print(f"Added pair to {name}: {', '.join(change.added)}.")
    for warning in change.warnings:
        print(f"warning: {warning}", file=sys.stderr)


@dataclass
class NewKey:
    """`--new-key`: a Space key made for the project and stored only in the secret."""

    share_with: list[str]
    expires_in: int | None
    template: str | None = None  # None: the broker's default template when a container registers


def _github(project: Path, repo: str | None) -> tuple[str | None, bool, str | None]:
    """gh (or None), whether it is signed in, and the project's repository (or None)."""
    from pair.project import codespaces

    gh = codespaces.gh_executable()
    signed_in = gh is not None and codespaces.gh_signed_in(gh)
    return gh, signed_in, repo or codespaces.repository(gh if signed_in else None, project)


def _make_key(gh: str, repo: str, new: NewKey) -> None:
    """Create a Space key named after `repo` and store it as its Codespaces secret; it is never
    printed or written. If gh refuses, the key is revoked again: nothing is left half-made. A key
    of that name made before (an earlier `--new-key`) is kept: a second run changes nothing."""
    from pair.api.grammar import space_name_from
    from pair.cli.session import signed_in
    from pair.project import codespaces

    name = space_name_from(repo.replace("/", "-"), "project")
    client, _ = signed_in()
    with client:
        earlier = next((k for k in client.space_keys() if k.name == name and k.state != "revoked"), None)
        if earlier is not None and earlier.state == "active":
            print(
                f'The Space key "{name}" exists already (an earlier --new-key made it): kept, and the '
                f"Codespaces secret {codespaces.SECRET} of {repo} left as it is."
            )
            print(f"For a new key: `pair spaces keys revoke {name}`, then `pair spaces init --new-key` again.")
            return
        if earlier is not None:
            raise PairError(
                f'Your Space key "{name}" (made by an earlier --new-key) has expired.',
                f"Revoke it with `pair spaces keys revoke {name}`, then run `pair spaces init --new-key` again.",
            )
        made = client.create_space_key(
            name, share_with=new.share_with, expires_in_seconds=new.expires_in, template=new.template
        )
        try:
            codespaces.set_secret(gh, repo, made.space_key)
        except PairError:
            client.revoke_space_key(made.key.id, delete_spaces=False)
            raise
    shared = ", ".join(made.key.share_with) or "nobody"
    print(f'Made the Space key "{name}" (its Spaces are shared with {shared}; `pair spaces keys list` shows it)')
    print(f"and set it as the Codespaces secret {codespaces.SECRET} of {repo} (gh secret set, on standard input).")


def _offer_new_key(repo: str) -> bool:
    """At a terminal, and signed in to a broker: whether the person wants a new key made now."""
    from pair import config
    from pair.project import codespaces

    if config.load_session() is None:
        return False
    return typer.confirm(
        f"Make a new Space key and store it as the Codespaces secret {codespaces.SECRET} of {repo} "
        f"(its Spaces shared with nobody yet; valid {humanize(parse(DEFAULT_EXPIRES))})?",
        default=True,
    )


def _secret(
    project: Path, key: str | None, key_file: Path | None, repo: str | None, new_key: NewKey | None = None
) -> None:
    """Offer to store the Space key as the Codespaces secret PAIR_SPACE_KEY (or make one), or say how to."""
    from pair.project import codespaces

    gh, signed_in, repo = _github(project, repo)
    command = codespaces.set_command(repo, key_file)
    if new_key is not None and gh is not None and signed_in and repo is not None:
        _make_key(gh, repo, new_key)
        return
    if gh is None or not signed_in or repo is None:
        why = (
            "With GitHub's CLI (gh) installed"
            if gh is None
            else "After `gh auth login`"
            if not signed_in
            else "Once the project is on GitHub (or with --repo OWNER/REPO)"
        )
        print(f"Codespaces read the Space key from the secret {codespaces.SECRET}; never commit it. {why}, run:")
        print(f"  {command}")
        return
    if key is None and is_interactive():
        if _offer_new_key(repo):
            _make_key(gh, repo, NewKey(share_with=[], expires_in=parse(DEFAULT_EXPIRES)))
            return
        key = (
            typer.prompt(
                f"A Space key to store as the Codespaces secret {codespaces.SECRET} of {repo} (Enter skips)",
                default="",
                show_default=False,
                hide_input=True,
            ).strip()
            or None
        )
        if key is not None:
            codespaces.check_key(key)
    if key is None:
        print(f"Codespaces read the Space key from the secret {codespaces.SECRET} of {repo}; set it with:")
        print(f"  {command}")
        return
    codespaces.set_secret(gh, repo, key)
    print(f"Set the Codespaces secret {codespaces.SECRET} of {repo} (gh secret set, the key on standard input).")


def _new_key_request(
    project: Path, repo: str | None, user: list[str] | None, expires: str, template: str | None
) -> NewKey:
    """`--new-key`, checked before anything is written: gh signed in, the repository known, and a
    pair session to make the key with."""
    from pair import config

    seconds = expiry(expires)  # the one check of a key's lifetime, as `pair spaces keys create` does
    gh, signed_in, found = _github(project, repo)
    if gh is None or not signed_in or found is None:
        raise PairError(
            "--new-key stores the new key as a Codespaces secret with GitHub's CLI, which "
            + (
                "is not installed."
                if gh is None
                else "is not signed in."
                if not signed_in
                else "knows no repository here."
            ),
            "Install gh and run `gh auth login` (pass --repo OWNER/REPO if needed), or make a key with "
            "`pair spaces keys create --name NAME --output FILE` and store it yourself.",
        )
    if config.load_session() is None:
        from pair.api.errors import login_hint

        raise PairError("--new-key makes the key on your broker, and you are not logged in.", login_hint())
    return NewKey(share_with=list(user or []), expires_in=seconds, template=template)


def init(
    kind: Annotated[
        Kind | None,
        typer.Argument(help="What to set up. [default: what the project has, else ask, else devcontainer]"),
    ] = None,
    directory: Annotated[Path, typer.Option("--dir", help="The project's folder.", show_default=False)] = Path("."),
    file: Annotated[
        Path | None, typer.Option("--file", help="The devcontainer.json or Devfile to edit or create.")
    ] = None,
    component: Annotated[
        str | None, typer.Option("--component", help="The Devfile container component pair's commands run in.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="A Space key to store as the Codespaces secret PAIR_SPACE_KEY (needs gh)."),
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="The GitHub repository for the secret. [default: this project's]")
    ] = None,
    no_secret: Annotated[bool, typer.Option("--no-secret", help="Skip the Codespaces secret step.")] = False,
    new_key: Annotated[
        bool,
        typer.Option(
            "--new-key", help="Make a Space key named after the repository and store it as the secret (needs gh)."
        ),
    ] = False,
    user: Annotated[
        list[str] | None, typer.Option("--user", help="With --new-key: share its Spaces with this person (repeatable).")
    ] = None,
    expires: Annotated[
        str, typer.Option("--expires", help="With --new-key: how long it registers containers.")
    ] = DEFAULT_EXPIRES,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="With --new-key: make its Spaces from this template. [default: the broker's default template]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Add pair to the project here: the Feature and lifecycle commands in devcontainer.json, or
    commands and postStart events in a Devfile (comments kept); safe to run again."""
    from pair.project import codespaces

    if no_secret and (key_file or repo or new_key):
        raise PairError(
            "--no-secret skips the secret, so --key-file, --new-key and --repo have nothing to do.",
            "Pass one or the other.",
        )
    if new_key and key_file:
        raise PairError("--new-key makes a key; --key-file stores one you have.", "Pass one of them.")
    if user and not new_key:
        raise PairError("--user names who a new key's Spaces are shared with.", "Add --new-key, or drop --user.")
    if template and not new_key:
        raise PairError("--template names what a new key's Spaces are made from.", "Add --new-key, or drop --template.")
    wanted = _new_key_request(directory, repo, user, expires, template) if new_key else None
    if not directory.is_dir():
        raise PairError(f"{directory} is not a folder.", "Pass the project's folder with --dir.")
    key = codespaces.read_key(key_file) if key_file else None
    if repo is not None:
        codespaces.check_repository(repo)
    targets, notes = _targets(directory, kind, file)
    if (key is not None or new_key) and not no_secret and all(t.kind is not Kind.devcontainer for t in targets):
        raise PairError(
            "--key-file sets a Codespaces secret, which only a devcontainer.json reads.",
            "Give a Devfile workspace its key through the platform's secret store (docs/install.md).",
        )
    changes = [_change(target, directory, component) for target in targets]  # all checked before any write
    for change in changes:
        if change.new != change.old:
            _write(change.target.path, change.new)
        _report(change)
    for note in notes:
        print(note)
    if no_secret:
        return
    if any(t.kind is Kind.devcontainer for t in targets):
        _secret(directory, key, key_file, repo, wanted)
    if any(t.kind is Kind.devfile for t in targets):
        print(
            "Devfile workspaces read the Space key from the environment variable PAIR_SPACE_KEY: give it from your "
            "platform's secret store (docs/install.md); never commit it."
        )
