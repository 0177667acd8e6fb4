"""`pair spaces …`: authorize, list, share, unshare, delete, and (in the container) bootstrap."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pair import durations, files
from pair.api.errors import PairError
from pair.cli import listing
from pair.cli.output import is_interactive
from pair.cli.resolve import choose_space, form, one_ref, resolve_space
from pair.cli.session import signed_in
from pair.printable import printable

if TYPE_CHECKING:  # httpx loads only when a command talks to the broker
    from pair.api.client import Client
    from pair.api.models import Space

app = typer.Typer(
    rich_markup_mode=None, no_args_is_help=True, help="Create, share and manage Spaces; bootstrap one in a container."
)

SPACE_HELP = "The Space: its sp_… id or a name unique among those you can see. [default: the only one you own]"
SpaceArg = Annotated[str | None, typer.Argument(metavar="SPACE", help=SPACE_HELP, show_default=False)]
SpaceOption = Annotated[
    str | None, typer.Option("--space", metavar="SPACE", help="The same as the SPACE argument.", show_default=False)
]


def _find(client: Client, ref: str, verb: str) -> Space:
    return resolve_space(client.spaces(), ref, verb)


def _owned(client: Client, ref: str | None, verb: str) -> Space:
    """The Space an owner-only verb acts on (pair.cli.resolve's rule)."""
    return choose_space(client.spaces(), ref, verb, owned=True)


def split_space_and_emails(
    words: list[str], option: str | None, verb: str, *, groups: Sequence[str] = ()
) -> tuple[str | None, list[str]]:
    """`[SPACE] EMAIL…`: a first word without `@` is the Space (Space names cannot hold one).
    With `groups`, no email is needed."""
    space = None
    if words and "@" not in words[0]:
        space, words = words[0], words[1:]
    if not words and not groups:
        raise PairError("Name at least one person by their email, or a group with --group.", f"Run `{form(verb)}`.")
    return one_ref(space, option, verb), words


@app.command("list")
def list_spaces(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False) -> None:
    """Spaces you own or that are shared with you."""
    listing.list_spaces(as_json=as_json)


OUTPUT_HINT = "Pass --output a new file name in a directory you can write, or --output - for standard output."


def _choose_teammates(client: Client) -> list[str] | None:
    import threading

    from pair.cli.picker import pick_users  # prompt_toolkit loads only when a person is asked

    # prompt_toolkit (~50 ms to import) loads while the broker answers, not after.
    loading = threading.Thread(target=__import__, args=("prompt_toolkit",), daemon=True)
    loading.start()
    teammates = [t.email for t in client.teammates()]
    loading.join()
    if not teammates:
        print("There is nobody else on this broker yet; the Space is shared with no one for now.")
        return []
    return pick_users(teammates)


@app.command()
def authorize(
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Share with this person (repeatable); skips the prompt.")
    ] = None,
    no_share: Annotated[bool, typer.Option("--no-share", help="Share with nobody; skips the prompt.")] = False,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The Space's name. [default: generated, like dynamic_stark]", show_default=False),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the token (a 0600 file; '-' for standard output).")
    ] = Path("SPACE_ID.txt"),
    space: Annotated[
        str | None, typer.Option("--space", help="Issue a fresh token for this existing Space (keeps its shares).")
    ] = None,
    ttl: Annotated[
        str, typer.Option("--ttl", help="How long the token is valid (e.g. 1h, 30m); the broker caps it.")
    ] = "1h",
    template: Annotated[
        str | None,
        typer.Option("--template", help="The new Space's template. [default: the broker's default template]"),
    ] = None,
) -> None:
    """Create a Space (or renew one's token) and write its bootstrap token to SPACE_ID.txt."""
    ttl_seconds = durations.parse(ttl)
    if space and name:
        raise PairError("--space renews an existing Space's token; --name is for a new Space.", "Pass one of them.")
    if space and template:
        raise PairError("--space renews an existing Space's token; --template is for a new Space.", "Pass one of them.")
    if user and no_share:
        raise PairError("--user and --no-share contradict each other.", "Pass one of them.")
    files.check_new_file(output, replace=True, what="the token", hint=OUTPUT_HINT)
    client, _ = signed_in()
    with client:
        if space:
            target = _find(client, space, "authorize")
            issued = client.new_token(target.id, ttl_seconds=ttl_seconds)
            if user:  # after the token: a refused token must not have shared the Space
                issued.space = client.share(target.id, add=user)
        else:
            if user or no_share:
                share_with = list(user or [])
            elif is_interactive():
                chosen = _choose_teammates(client)
                if chosen is None:
                    print("Cancelled.", file=sys.stderr)
                    raise typer.Exit(1)
                share_with = chosen
            else:
                raise PairError(
                    "Who should the Space be shared with? There is no terminal to ask on.",
                    "Pass --user EMAIL (repeatable), or --no-share.",
                )
            issued = client.authorize(name=name, share_with=share_with, ttl_seconds=ttl_seconds, template=template)
    again = f"The Space exists: run `pair spaces authorize --space {issued.space.name} --output FILE` for a new token."
    files.write_new_file(output, issued.token + "\n", what="the token", hint=again)
    ready = f'You\'re ready to bootstrap your Space "{issued.space.name}".'
    valid = f"Your Space's token is valid for {durations.humanize(issued.ttl_seconds)}"
    if files.is_stdout(output):  # the token alone on standard output, for a pipe
        print(f"{ready}\n{valid}; it is the line printed on standard output.", file=sys.stderr)
    else:
        print(f"{ready}\n{valid} and is available from {output}.")


@app.command()
def delete(
    space: SpaceArg = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    space_option: SpaceOption = None,
) -> None:
    """Delete a Space you own: its token and the container's credential stop working."""
    client, _ = signed_in()
    with client:
        target = _owned(client, one_ref(space, space_option, "delete"), "delete")
        if not yes:
            if not is_interactive():
                raise PairError(f'Deleting "{target.name}" needs confirmation.', "Pass --yes to delete without asking.")
            if not typer.confirm(
                f'Delete the Space "{target.name}" ({target.id})? This cannot be undone', default=False
            ):
                print("Cancelled.", file=sys.stderr)
                raise typer.Exit(1)
        client.delete_space(target.id)
    print(f'Deleted space "{target.name}" ({target.id}).')


def _update_shares(
    ref: str | None,
    verb: str,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    add_groups: Sequence[str] = (),
    remove_groups: Sequence[str] = (),
) -> None:
    client, _ = signed_in()
    with client:
        updated = client.share(
            _owned(client, ref, verb).id, add=add, remove=remove, add_groups=add_groups, remove_groups=remove_groups
        )
    people = ", ".join(updated.shared_with or [])
    groups = ", ".join(f"group {g}" for g in updated.shared_with_groups or [])
    print(f'"{updated.name}" is shared with {printable(", ".join(x for x in (people, groups) if x)) or "nobody"}.')


Emails = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="EMAIL",
        help="People's emails; a first word without @ names the Space instead (default: the only one you own).",
        show_default=False,
    ),
]
Groups = Annotated[
    list[str] | None, typer.Option("--group", metavar="NAME", help="A group (repeatable).", show_default=False)
]


def _need_someone(words: list[str] | None, groups: list[str] | None) -> None:
    if not words and not groups:  # a usage error, as a missing argument is
        raise typer.BadParameter("Missing argument 'EMAIL...' (or --group NAME).", param_hint="EMAIL")


@app.command(options_metavar="[SPACE] [--space SPACE] [--group NAME]")
def share(words: Emails = None, space_option: SpaceOption = None, group: Groups = None) -> None:
    """Share a Space you own with people or groups: they can see it and SSH into it."""
    _need_someone(words, group)
    ref, emails = split_space_and_emails(words or [], space_option, "share", groups=group or [])
    _update_shares(ref, "share", add=emails, add_groups=group or [])


@app.command(options_metavar="[SPACE] [--space SPACE] [--group NAME]")
def unshare(words: Emails = None, space_option: SpaceOption = None, group: Groups = None) -> None:
    """Stop sharing a Space with people or groups; those who lose access lose their open sessions at once."""
    _need_someone(words, group)
    ref, emails = split_space_and_emails(words or [], space_option, "unshare", groups=group or [])
    _update_shares(ref, "unshare", remove=emails, remove_groups=group or [])


@app.command()
def bootstrap(
    token: Annotated[
        str | None,
        typer.Argument(
            help="The Space token. [default: $PAIR_SPACE_TOKEN, then $PAIR_HOME/bootstrap.txt]", show_default=False
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="A reusable Space key instead of a token: the container becomes its own Space, named after it. "
            "[default: $PAIR_SPACE_KEY, then $PAIR_HOME/space-key]",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to keep retrying an unreachable broker.")
    ] = 120.0,
) -> None:
    """(In the container) register it as a Space, with a Space token or a Space key. Safe to run on every attach."""
    from pair.container import supervisor
    from pair.container.bootstrap import bootstrap as run_bootstrap

    def waiting() -> None:
        print("Another `pair spaces bootstrap` is running in this container; waiting for it.", file=sys.stderr)

    outcome = run_bootstrap(token, key=key, timeout=timeout, on_wait=waiting)
    reg = outcome.registration
    if outcome.reused:
        print(printable(f'This container is already the Space "{reg.space_name}" ({reg.space_id}) on {reg.url}.'))
    else:
        print(printable(f'Bootstrapped this container as the Space "{reg.space_name}" ({reg.space_id}) on {reg.url}.'))
    note = supervisor.ensure_agent()  # a running agent notices the new registration by itself
    if note:
        print(note, file=sys.stderr)
