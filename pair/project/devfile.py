"""pair in a Devfile (2.x): the three commands of devfiles/devfile.yaml and a `postStart` event that
runs them, added to an existing devfile.yaml with ruamel.yaml's round-trip mode, which keeps
comments, key order, quoting and block scalars.

The commands run in one of the Devfile's container components: the only one, or the one named. A
command that already installs, starts or bootstraps pair (by its id or its command line) counts as
present, so a second run changes nothing. No secret is written: the workspace gets the token or key
as an environment variable from the platform's secret store (docs/install.md).
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pair.api.errors import PairError
from pair.container.configs import START_SUPERVISORD, STARTS_SUPERVISORD
from pair.project.devcontainer import Outcome

if TYPE_CHECKING:
    from ruamel.yaml import YAML

NAMES = ("devfile.yaml", ".devfile.yaml", "devfile.yml", ".devfile.yml")  # what Devfile tools look for
DEFAULT_COMPONENT = "devenv"
DEFAULT_IMAGE = "node:18"  # the recommended Devfile's: it has curl, which install-pair needs
EVENT = "postStart"


@dataclass(frozen=True)
class Command:
    id: str
    does: str  # what it runs, for messages; a command with this id must mention it
    runs: re.Pattern[str]  # a command line matching this already does the job, whatever its id
    command_line: str
    working_dir: str | None = None
    default: bool = False  # the run group's default command, unless the Devfile has one


COMMANDS = (
    Command(
        "install-pair",
        "install.sh",
        re.compile(r"pair\S*/install\.sh"),  # the published installer, or a broker's (…pair…/install.sh)
        "curl -fsSL https://raw.githubusercontent.com/pairspaces/devfiles/main/install.sh | sh",
    ),
    Command(
        "start-supervisord",
        "supervisord",
        STARTS_SUPERVISORD,  # pair's command from before START_SUPERVISORD too: never a second supervisord
        START_SUPERVISORD,
    ),
    Command(
        "bootstrap",
        "pair spaces bootstrap",
        re.compile(r"\bpair spaces bootstrap\b"),
        # Returns promptly: the agent lives under supervisord. Waits at most 2 minutes for install-pair.
        'i=0; while [ ! -x /opt/pair/pair ] && [ "$i" -lt 120 ]; do sleep 1; i=$((i + 1)); done\n'
        "/opt/pair/pair spaces bootstrap\n",
        working_dir="/projects",
        default=True,
    ),
)


def find(project: Path) -> list[Path]:
    """The Devfiles of `project`, in the order Devfile tools look for them."""
    return [project / name for name in NAMES if (project / name).is_file()]


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 1 << 16  # never re-wrap a long line
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _dump(yaml: YAML, data: Any, explicit_start: bool) -> str:
    yaml.explicit_start = explicit_start
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _load(text: str, name: str) -> tuple[Any, YAML, bool]:
    """The round-trip data, a YAML instance whose indentation reproduces `text` (if any of the
    usual ones does), and whether it does."""
    from ruamel.yaml.error import YAMLError

    explicit_start = text.lstrip().startswith("---")
    candidates = [(m, o + 2, o) for m in (2, 4, 3) for o in (2, 0, 4, 1, 3)]
    try:
        for mapping, sequence, offset in candidates:
            yaml = _yaml(mapping, sequence, offset)
            data = yaml.load(text)
            if _dump(yaml, data, explicit_start) == text:
                return data, yaml, True
        yaml = _yaml(2, 4, 2)
        return yaml.load(text), yaml, False
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "it does not parse"
        raise PairError(
            f"{name} is not valid YAML: {problem}{where}.", "Fix it, then run `pair spaces init` again."
        ) from None


def _container_components(data: Any) -> list[str]:
    return [
        str(c["name"]) for c in data.get("components") or [] if isinstance(c, dict) and "container" in c and "name" in c
    ]


def _choose_component(data: Any, name: str, component: str | None) -> str:
    containers = _container_components(data)
    if component is not None:
        if component not in containers:
            listed = ", ".join(containers) or "none"
            raise PairError(
                f'{name} has no container component "{component}" (its container components: {listed}).',
                "Pass --component with one of them.",
            )
        return component
    if len(containers) == 1:
        return containers[0]
    if not containers:
        raise PairError(
            f"{name} has no container component for pair's commands to run in.",
            "Add one (see devfiles/devfile.yaml), then run `pair spaces init devfile` again.",
        )
    raise PairError(
        f"{name} has several container components ({', '.join(containers)}): which one is your dev environment?",
        "Pass --component NAME.",
    )


def _existing(commands: list[Any], wanted: Command, name: str) -> str | None:
    """The id of the Devfile command that already does `wanted`'s job: the one with its id (which
    must then mention what it runs), else one whose command line runs it."""
    lines = {}
    for command in commands:
        if isinstance(command, dict) and "id" in command:
            exec_ = command.get("exec")
            lines[str(command["id"])] = str(exec_.get("commandLine") or "") if isinstance(exec_, dict) else ""
    if wanted.id in lines:
        if wanted.does not in lines[wanted.id]:
            raise PairError(
                f'{name} already has a command "{wanted.id}", and it does not run {wanted.does}.',
                "Rename that command, then run `pair spaces init devfile` again.",
            )
        return wanted.id
    return next((i for i, line in lines.items() if wanted.runs.search(line)), None)


def _has_default_run(commands: list[Any]) -> bool:
    for command in commands:
        for kind in ("exec", "apply", "composite"):
            group = ((command.get(kind) or {}) if isinstance(command, dict) else {}).get("group") or {}
            if group.get("kind") == "run" and group.get("isDefault"):
                return True
    return False


def _new_command(command: Command, component: str, default: bool) -> Any:
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.scalarstring import LiteralScalarString

    line: str | LiteralScalarString = command.command_line
    if "\n" in command.command_line:
        line = LiteralScalarString(command.command_line)
    exec_ = CommentedMap([("component", component), ("commandLine", line)])
    if command.working_dir:
        exec_["workingDir"] = command.working_dir
    exec_["group"] = CommentedMap([("kind", "run")] + ([("isDefault", True)] if default else []))
    return CommentedMap([("id", command.id), ("exec", exec_)])


def add_pair(text: str, name: str, component: str | None = None) -> Outcome:
    """pair added to the Devfile `text` (`name` is its path, for messages); `component` names the
    container component the commands run in (needed when there are several).

    Raises PairError if the text is not YAML, not a Devfile 2.x, or the component is unclear."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    crlf = "\r\n" in text  # ruamel.yaml would keep the \r in comments only: work in \n, write back \r\n
    data, yaml, exact = _load(text.replace("\r\n", "\n") if crlf else text, name)
    if not isinstance(data, dict) or not str(data.get("schemaVersion", "")).startswith("2."):
        raise PairError(
            f"{name} is not a Devfile 2.x (it has no schemaVersion: 2.x.y).",
            "pair adds itself to Devfiles of schema 2.0 and later.",
        )
    for key, kind in (("commands", list), ("components", list), ("events", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise PairError(f'"{key}" in {name} is not a {"list" if kind is list else "mapping"}.', "Fix it first.")
    if (data.get("events") or {}).get(EVENT) is not None and not isinstance(data["events"][EVENT], list):
        raise PairError(f'"events.{EVENT}" in {name} is not a list of command ids.', "Fix it first.")
    outcome = Outcome(text)
    commands = list(data.get("commands") or [])
    ids: list[str] = []
    new: list[Any] = []
    chosen: str | None = None
    for command in COMMANDS:
        found = _existing(commands, command, name)
        if found is None:
            chosen = chosen or _choose_component(data, name, component)
            default = command.default and not _has_default_run(commands + new)
            new.append(_new_command(command, chosen, default))
            outcome.added.append(f"the command {command.id}")
            found = command.id
        ids.append(found)
    if new:
        if data.get("commands") is None:
            data["commands"] = CommentedSeq()
        data["commands"].extend(new)

    events = data.get("events")
    if events is None:
        events = data["events"] = CommentedMap()
    post_start = events.get(EVENT)
    if post_start is None:
        post_start = events[EVENT] = CommentedSeq()
    missing = [i for i in ids if i not in post_start]
    if missing:
        post_start.extend(missing)
        outcome.added.append(f"events.{EVENT}: {', '.join(missing)}")

    if outcome.added:
        outcome.text = _dump(yaml, data, text.lstrip().startswith("---"))
        if crlf:
            outcome.text = outcome.text.replace("\n", "\r\n")
        if not exact:
            outcome.warnings.append(
                f"ruamel.yaml could not keep every detail of {name}'s layout (indentation, line breaks): "
                "review the change with `git diff`."
            )
    return outcome


def devfile_name(project: str) -> str:
    """A Devfile metadata name from a folder name: lower-case letters, digits and dashes (what a
    DevWorkspace accepts as a Kubernetes object name), at most 63 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-")[:63].rstrip("-")
    return slug or DEFAULT_COMPONENT


def new_devfile(project: str) -> str:
    """A new devfile.yaml for the folder `project` with pair set up: devfiles/devfile.yaml without
    the token placeholder (the token or key comes from the platform's secret store)."""
    base = (
        "# A Devfile workspace shared with your teammates through pair: `pair spaces connect` gets them a shell.\n"
        "# The devenv component stands for your own image. pair's commands run on every start.\n"
        "schemaVersion: 2.2.0\n"
        "metadata:\n"
        f"  name: {devfile_name(project)}\n"
        "components:\n"
        f"  - name: {DEFAULT_COMPONENT}\n"
        "    container:\n"
        f"      image: {DEFAULT_IMAGE}\n"
        "      mountSources: true\n"
        "      command: ['sleep']\n"
        "      args: ['infinity']\n"
    )
    return add_pair(base, "devfile.yaml").text
