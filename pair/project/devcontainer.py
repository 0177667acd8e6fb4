"""pair in a devcontainer.json: the Feature, the two lifecycle commands, and the user they run as.

What is added is the configuration docs/install.md and the Feature's README prescribe:

    "features": {"ghcr.io/pairspaces/devcontainers/pairspaces": {}},
    "postStartCommand": START_SUPERVISORD,
    "postAttachCommand": "/opt/pair/pair spaces bootstrap",
    "remoteUser": "root"

START_SUPERVISORD (pair.container.configs) starts supervisord without the bootstrap secrets
(`/usr/bin/env -u PAIR_SPACE_KEY -u PAIR_SPACE_TOKEN supervisord -c …`), so neither it nor sshd
nor the agent carries them.

An existing lifecycle command is combined with pair's, never replaced: a string or an array becomes
the object form (the devcontainer spec runs an object's commands in parallel, keyed by name) as
`{"project": <the existing command>, "pair": <pair's>}`, and an object gains a `"pair"` entry.
Nothing is added that is already there (a postStartCommand that starts supervisord, pair's older
`supervisord -c …` among them, counts as pair's: never a second supervisord), so a second run
changes nothing. No secret is ever written: the token or key reaches the container as an
environment variable (a Codespaces secret).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pair.api.errors import PairError
from pair.container.configs import START_SUPERVISORD, STARTS_SUPERVISORD
from pair.project import jsonc

FEATURE_ID = "ghcr.io/pairspaces/devcontainers/pairspaces"  # as published (devcontainer-feature/)
FEATURE_NAME = "pairspaces"
COMMANDS = {
    "postStartCommand": START_SUPERVISORD,  # sshd and the pair agent, without the bootstrap secrets
    "postAttachCommand": "/opt/pair/pair spaces bootstrap",  # registers the container; harmless again
}
REMOTE_USER = "root"  # bootstrap writes the credential into the root-owned /opt/pair
PAIR_ENTRY = "pair"  # pair's command in a lifecycle command's object form
PROJECT_ENTRY = "project"  # the project's own command, when a string or array becomes that form
KEY_VARIABLE = "PAIR_SPACE_KEY"  # what the container reads the key from (a Codespaces secret)
DEFAULT_PATH = Path(".devcontainer") / "devcontainer.json"
DEFAULT_IMAGE = "mcr.microsoft.com/devcontainers/base:bookworm"


@dataclass
class Outcome:
    """What adding pair to one configuration does: its new text (the old one when `added` is
    empty), what was added, and what the person should know."""

    text: str
    added: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def find(project: Path) -> list[Path]:
    """The devcontainer.json files of `project`, in the spec's order of precedence
    (containers.dev, "devcontainer.json" locations): `.devcontainer/devcontainer.json`, then
    `.devcontainer.json`, then `.devcontainer/<folder>/devcontainer.json` (sorted)."""
    found = [p for p in (project / DEFAULT_PATH, project / ".devcontainer.json") if p.is_file()]
    folder = project / ".devcontainer"
    if folder.is_dir():
        found += sorted(p for p in folder.glob("*/devcontainer.json") if p.is_file())
    return found


def is_pair_feature(feature: str) -> bool:
    """Whether a `features` key refers to pair's Feature: an OCI reference with or without a tag
    or digest (`ghcr.io/pairspaces/devcontainers/pairspaces:0`), a local folder
    (`./pairspaces`) or a tarball (`…/devcontainer-feature-pairspaces.tgz`)."""
    name = feature.split("@", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    name = name.removesuffix(".tgz").removeprefix("devcontainer-feature-")
    return name.split(":", 1)[0] == FEATURE_NAME


def _mentions(command: Any, wanted: str) -> bool:
    """Whether a lifecycle command (string, array or object form) already runs `wanted`: the very
    command, or for START_SUPERVISORD any command that starts supervisord (pair's older
    `supervisord -c …` among them), since two supervisords started at once make one fail."""
    if isinstance(command, str):
        return wanted in command or (wanted == START_SUPERVISORD and bool(STARTS_SUPERVISORD.search(command)))
    if isinstance(command, list):
        return _mentions(" ".join(str(part) for part in command), wanted)
    if isinstance(command, dict):
        return any(_mentions(v, wanted) for v in command.values())
    return False


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else "a string"


def add_pair(text: str, name: str) -> Outcome:
    """pair added to the devcontainer.json `text` (`name` is its path, for messages).

    Raises PairError if the text is not JSON with comments, its top level is not an object, or
    `features` or a lifecycle command has a type the spec does not allow."""
    try:
        doc = jsonc.parse(text)
    except jsonc.JsoncError as exc:
        raise PairError(
            f"{name} is not valid JSON with comments: {exc.reason} (line {exc.line}, column {exc.column}).",
            "Fix it (the devcontainer CLI would refuse it too), then run `pair spaces init` again.",
        ) from None
    root = doc.root
    if root.kind != "object":
        raise PairError(
            f"{name} holds {_kind(jsonc.value_of(doc))}, not an object.", "A devcontainer.json is an object."
        )
    data: dict[str, Any] = jsonc.value_of(doc)
    expected = copy.deepcopy(data)
    edits: list[jsonc.Edit] = []
    at_root: list[tuple[str, Any]] = []
    outcome = Outcome(text)

    features = root.member("features")
    if features is None:
        at_root.append(("features", {FEATURE_ID: {}}))
        outcome.added.append(f"the Feature {FEATURE_ID}")
    elif features.value.kind != "object":
        raise PairError(
            f'"features" in {name} is {_kind(data["features"])}; the spec wants an object.',
            'Make it an object of Feature ids, e.g. "features": {}.',
        )
    elif any(is_pair_feature(m.key) for m in features.value.members):
        for key, options in data["features"].items():
            if is_pair_feature(key) and isinstance(options, dict) and options.get("token"):
                outcome.warnings.append(
                    f'{name} holds a Space token in the Feature\'s "token" option, where whoever reads the file '
                    f"can use it: remove it, and give the container its key through the {KEY_VARIABLE} secret."
                )
    else:
        edits += jsonc.insert_members(doc, features.value, [(FEATURE_ID, {})])
        expected["features"][FEATURE_ID] = {}
        outcome.added.append(f"the Feature {FEATURE_ID}")

    for key, command in COMMANDS.items():
        member = root.member(key)
        if member is None:
            at_root.append((key, command))
        elif _mentions(data[key], command):
            continue
        elif member.value.kind in ("string", "array"):
            edits += jsonc.wrap_in_object(doc, member.value, PROJECT_ENTRY, PAIR_ENTRY, command)
            expected[key] = {PROJECT_ENTRY: data[key], PAIR_ENTRY: command}
        elif member.value.kind == "object":
            if PAIR_ENTRY in data[key]:
                continue  # the project's own "pair" entry: theirs to keep
            edits += jsonc.insert_members(doc, member.value, [(PAIR_ENTRY, command)])
            expected[key][PAIR_ENTRY] = command
        else:
            raise PairError(
                f'"{key}" in {name} is {_kind(data[key])}; the spec allows a string, an array or an object.',
                "Fix it, then run `pair spaces init` again.",
            )
        outcome.added.append(key)

    remote_user = data.get("remoteUser")
    if "remoteUser" not in data:
        at_root.append(("remoteUser", REMOTE_USER))
        outcome.added.append(f'remoteUser "{REMOTE_USER}"')
    elif remote_user != REMOTE_USER:
        outcome.warnings.append(
            f"{name} sets remoteUser to {json.dumps(remote_user)}: pair's lifecycle commands need root "
            f'(supervisord starts sshd; bootstrap writes /opt/pair). Set "remoteUser": "root" unless that user '
            "can run them with sudo."
        )

    if at_root:
        edits += jsonc.insert_members(doc, root, at_root)
        expected.update(at_root)
    if edits:
        outcome.text = jsonc.apply(doc, edits, expected)
    return outcome


def new_config(name: str, newline: str = "\n") -> str:
    """A new devcontainer.json for the project `name` with pair set up: a Debian base image, the
    Feature, the lifecycle commands and remoteUser, with comments saying why."""
    lines = [
        "// A dev container shared with your teammates through pair: `pair spaces connect` gets them a shell.",
        "// Format: https://containers.dev/implementors/json_reference/",
        "{",
        f'\t"name": {json.dumps(name, ensure_ascii=False)},',
        "\t// Your image (or a Dockerfile); pair's Feature works on Debian, Ubuntu, Alpine and Fedora.",
        f'\t"image": {json.dumps(DEFAULT_IMAGE)},',
        '\t"features": {',
        f"\t\t{json.dumps(FEATURE_ID)}: {{}}",
        "\t},",
        "\t// supervisord runs sshd and the pair agent; bootstrap registers the container as a Space.",
        *(f"\t{json.dumps(key)}: {json.dumps(command)}," for key, command in COMMANDS.items()),
        "\t// pair keeps the container's credential in the root-owned /opt/pair.",
        f'\t"remoteUser": {json.dumps(REMOTE_USER)}',
        "}",
        "",
    ]
    return newline.join(lines)
