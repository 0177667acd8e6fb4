"""`pair spaces keys create|list|revoke`: reusable Space keys, for a secret store.

Not SSH keys (those are `pair keys`): a Space key lets a container register itself as a Space
of yours, named after the container and shared as the key says (docs/tokens.md).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pair import durations, files
from pair.api.errors import PairError
from pair.cli.output import table
from pair.cli.session import signed_in
from pair.printable import printable

if TYPE_CHECKING:  # httpx (and msgspec) load only when a command talks to the broker
    from pair.api.client import Client
    from pair.api.models import NewSpaceKey, SpaceKey

app = typer.Typer(
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Reusable Space keys: any container that bootstraps with one becomes its own Space of yours "
    "(for a secret store such as the Codespaces secret PAIR_SPACE_KEY; not your SSH keys, which are `pair keys`).",
)

NEVER = ("never", "none", "0")
# What the broker gives a key made without a lifetime (pair.api.models.SPACE_KEY_DEFAULT_SECONDS, held
# to it by a test): written out, so that `--help` loads no wire models.
DEFAULT_EXPIRES = "90d"
COLUMNS = ("name", "template", "state", "uses", "last_used", "expires", "shared_with", "spaces")
DEFAULT_TEMPLATE = "(default)"  # a key naming no template: the broker's default when a container registers
REMOVED = " (removed)"  # after a template the broker no longer has: the key registers no new Space


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else "-"


def expiry(text: str) -> int | None:
    """Seconds a Space key lives, from `--expires` as typed (pair.durations; never/none/0: None).
    Raises PairError outside the lifetimes the broker takes (pair.api.models.SPACE_KEY_*_SECONDS)."""
    from pair.api.models import SPACE_KEY_MAX_SECONDS, SPACE_KEY_MIN_SECONDS

    if text.strip().lower() in NEVER:
        return None
    seconds = durations.parse(text)
    if seconds < SPACE_KEY_MIN_SECONDS:
        raise PairError("A Space key must live at least one minute.", "Pass a longer --expires, such as 30d, or never.")
    if seconds > SPACE_KEY_MAX_SECONDS:
        raise PairError("A Space key lives at most 10 years.", "Pass a shorter --expires, such as 365d, or never.")
    return seconds


OUTPUT_HINT = "Pass --output a new file name in a directory you can write, or - (or nothing) to see the key once."


def _write_or_revoke(client: Client, made: NewSpaceKey, output: Path) -> None:
    """Write the new key to `output` (checked before it was made); if that fails all the same
    (the disk filled up, the directory went away), revoke it, so no key lives that nobody holds."""
    try:
        files.write_new_file(output, made.space_key + "\n", what="the Space key", hint=OUTPUT_HINT)
    except PairError as failed:
        try:
            client.revoke_space_key(made.key.id, delete_spaces=False)
        except PairError as exc:
            raise PairError(
                f'{failed.message.rstrip(".")}, and revoking the new Space key "{made.key.name}" failed: {exc.message}',
                f"Revoke it with `pair spaces keys revoke {made.key.name}`, then create another.",
            ) from exc
        raise PairError(
            f'{failed.message.rstrip(".")}; the new Space key "{made.key.name}" is revoked, as nobody holds it.',
            failed.hint,
        ) from failed


@app.command()
def create(
    name: Annotated[
        str, typer.Option("--name", help="The key's name (unique among your keys), e.g. the repository's.")
    ],
    expires: Annotated[
        str, typer.Option("--expires", help="How long it registers containers (e.g. 30d, 12h), or never.")
    ] = DEFAULT_EXPIRES,
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Share every Space it makes with this person (repeatable).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the key to this new file (0600) instead of printing it ('-': standard output).",
            show_default=False,
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Make every Space it registers from this template. "
            "[default: the broker's default template when each container registers]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a Space key; it is shown once (or written 0600 with --output)."""
    expires_in = expiry(expires)
    target = output if output is not None else Path(files.STDOUT)  # shown once: standard output
    # pair.files' rule for a secret a person names a path for (and what "-" means), before the key exists
    files.check_new_file(target, replace=False, what="the Space key", hint=OUTPUT_HINT)
    client, _ = signed_in()
    with client:
        made = client.create_space_key(
            name, share_with=list(user or []), expires_in_seconds=expires_in, template=template
        )
        key = made.key
        until = f"until {_when(key.expires_at)} UTC" if key.expires_at else "with no expiry"
        shared = f"shared with {', '.join(key.share_with)}" if key.share_with else "shared with nobody"
        made_of = f"template {key.template}" if key.template else "the default template"
        created = printable(
            f'Created the Space key "{key.name}", valid {until}; its Spaces are made from {made_of}, {shared}.'
        )
        if files.is_stdout(target):  # the key alone on standard output (`> FILE`, a pipe); the rest on stderr
            print(created, file=sys.stderr)
            print("It is shown this once; store it as a secret (Codespaces: PAIR_SPACE_KEY):", file=sys.stderr)
        _write_or_revoke(client, made, target)
    if not files.is_stdout(target):
        print(created)
        print(f"It is in {target} (0600); store it as a secret, e.g. `pair spaces init --key-file {target}`.")


def template_cell(key: SpaceKey) -> str:
    """`large`, `large (removed)` when the broker no longer has it, or `(default)`."""
    if key.template is None:
        return DEFAULT_TEMPLATE
    return key.template + (REMOVED if key.template_removed else "")


def _row(key: SpaceKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "template": key.template,
        "template_removed": key.template_removed,
        "state": key.state,
        "uses": key.uses,
        "last_used_at": key.last_used_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.last_used_at else None,
        "expires_at": key.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.expires_at else None,
        "revoked_at": key.revoked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.revoked_at else None,
        "created_at": key.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "share_with": key.share_with,
        "spaces": key.spaces,
    }


@app.command("list")
def list_keys(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """Your Space keys: how often and when last used, when they expire, the Spaces they made."""
    client, _ = signed_in()
    with client:
        keys = client.space_keys()
    if as_json:
        print(json.dumps([_row(k) for k in keys], indent=2))
        return
    if not keys:
        print("No Space keys yet. Create one with `pair spaces keys create --name NAME`.", file=sys.stderr)
        return
    cells = [
        [
            k.name,
            template_cell(k),
            k.state,
            str(k.uses),
            _when(k.last_used_at),
            _when(k.expires_at) if k.expires_at else "never",
            ", ".join(k.share_with) or "-",
            ", ".join(k.spaces) or "-",
        ]
        for k in keys
    ]
    print(table(COLUMNS, cells))


@app.command()
def revoke(
    name: Annotated[str, typer.Argument(help="The key's name, as `pair spaces keys list` shows it.")],
    delete_spaces: Annotated[
        bool, typer.Option("--delete-spaces", help="Also delete the Spaces it made (their containers lose access).")
    ] = False,
) -> None:
    """Revoke a Space key: no new container registers with it. Containers it registered keep
    their Spaces unless --delete-spaces."""
    client, _ = signed_in()
    with client:
        found = next((k for k in client.space_keys() if k.name == name and k.state != "revoked"), None)
        if found is None:
            raise PairError(
                f'You have no Space key named "{name}" that is not revoked.', "See yours with `pair spaces keys list`."
            )
        done = client.revoke_space_key(found.id, delete_spaces=delete_spaces)
    print(printable(f'Revoked the Space key "{name}": it registers no new containers.'))
    if done.deleted_spaces:
        print(printable(f"Deleted the Spaces it made: {', '.join(done.deleted_spaces)}."))
    elif done.key.spaces:
        print(printable(f"The Spaces it made stay: {', '.join(done.key.spaces)} (`pair spaces delete` removes one)."))
