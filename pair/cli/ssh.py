"""How plain `ssh` reaches a Space, shared by `connect` (as `-o` arguments) and `ssh-config` (as
`Host` block lines): the ProxyCommand, host keys pinned to what the container reported at bootstrap
(no trust-on-first-use prompt), the login user, and the person's own key when pair knows it.

Every value pair hands to ssh goes through `ssh_value`, the one place that knows ssh_config(5)'s
quoting, its TOKENS (`%`) and ENVIRONMENT VARIABLES (`${…}`) expansions, and that ssh runs a
ProxyCommand through the shell.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pair import config, known_hosts
from pair.api.errors import PairError

if TYPE_CHECKING:
    from pair.api.models import Space

# ssh_config(5), TOKENS and ENVIRONMENT VARIABLES (OpenSSH 9.x): options whose values ssh expands.
PERCENT_EXPANDED = frozenset(
    {
        "certificatefile", "controlpath", "hostname", "identityagent", "identityfile", "knownhostscommand",
        "localcommand", "localforward", "proxycommand", "proxyjump", "remotecommand", "remoteforward",
        "userknownhostsfile",
    }
)  # fmt: skip
DOLLAR_EXPANDED = frozenset(
    {"certificatefile", "controlpath", "identityagent", "identityfile", "knownhostscommand", "userknownhostsfile"}
)
# Options whose value is the rest of the line, run by the user's shell (`$SHELL -c "exec …"`).
COMMANDS = frozenset({"proxycommand", "localcommand", "remotecommand", "knownhostscommand"})
PATHS = frozenset({"certificatefile", "identityfile", "include", "userknownhostsfile"})  # not "none"-able ones
GLOB = frozenset("*?[]")
NEEDS_QUOTES = frozenset(" \t\"'\\#=")

Value = str | tuple[str, ...]  # a command option's value is its argv


def ssh_value(key: str, value: Value) -> str:
    """`value` written so that ssh reads back exactly it for option `key`, both in an ssh_config
    file (`Key VALUE`) and on the command line (`-o Key=VALUE`).

    A command option (ProxyCommand…) takes an argv tuple: each word is shell-quoted (shlex), as
    ssh hands the line to the shell. Options ssh expands TOKENS in get `%` doubled; a path becomes
    absolute (ssh would read a relative one from its own directory). Any other value containing
    whitespace, quotes, `\\`, `#` or `=` is double-quoted with `\\` and `"` escaped (OpenSSH's
    argv_split rules). Raises PairError for what ssh cannot be told: a newline or NUL, `${` in an
    option that expands environment variables (there is no escape for it), a glob character in an
    Include path."""
    lower = key.lower()
    if lower in COMMANDS:
        if isinstance(value, str):
            raise TypeError(f"{key} takes an argv tuple")
        text = " ".join(command_word(word) for word in value)
    else:
        if not isinstance(value, str):
            raise TypeError(f"{key} takes a string")
        text = os.path.abspath(value) if lower in PATHS else value
    if any(c in text for c in "\n\r\0"):
        raise PairError(
            f"Cannot hand ssh the {key} {text!r}: it spans several lines.",
            "Use a PAIR_CONFIG_DIR (and install path) without line breaks.",
        )
    if lower in DOLLAR_EXPANDED and "${" in text:
        raise PairError(
            f"Cannot hand ssh the {key} {text!r}: ssh would expand its `${{` as an environment variable.",
            "Use a PAIR_CONFIG_DIR without `${`.",
        )
    if lower == "include" and GLOB & set(text):
        raise PairError(
            f"Cannot include {text!r} from ~/.ssh/config: ssh would expand its * ? [ ] as wildcards.",
            "Use a PAIR_CONFIG_DIR without those characters.",
        )
    if lower in PERCENT_EXPANDED:
        text = text.replace("%", "%%")
    if lower in COMMANDS:
        return text  # the rest of the line, verbatim
    if text and not NEEDS_QUOTES & set(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_word(word: str) -> str:
    """`word` quoted for a command option's line, which two parsers read: ssh first splits the
    whole line with argv_split (misc.c), where `\\` escapes a quote even between single quotes,
    then hands the line to the shell. shlex's single quotes suit both unless the word holds a
    backslash (`'a\\'` is an unterminated quote to ssh); such a word is double-quoted with `\\`,
    `"`, `$` and a backquote escaped, which both parsers read back as the word."""
    if "\\" not in word:
        return shlex.quote(word)
    return '"' + "".join("\\" + c if c in '\\"$`' else c for c in word) + '"'


def option_line(key: str, value: Value) -> str:
    """One line of a `Host` block."""
    return f"    {key} {ssh_value(key, value)}"


def option_args(options: Iterable[tuple[str, Value]]) -> list[str]:
    """The same options as ssh arguments: `-o Key=VALUE` each."""
    return [arg for key, value in options for arg in ("-o", f"{key}={ssh_value(key, value)}")]


def pair_command() -> str:
    """This `pair`, by absolute path: ssh runs the ProxyCommand without our PATH guarantees."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "pair" and argv0.is_file():
        return str(argv0.resolve())
    return shutil.which("pair") or str(Path(sys.executable).parent / "pair")


def proxy_command(space_id: str) -> tuple[str, ...]:
    """The ProxyCommand's argv for `space_id`. When the config dir is not the default
    (~/.config/pair: PAIR_CONFIG_DIR or XDG_CONFIG_HOME is set), it is carried through `env`:
    ssh started where that variable is unset (VS Code, a launcher, another terminal) would
    otherwise run `pair spaces proxy` against the default dir, which holds no session."""
    argv = (pair_command(), "spaces", "proxy", space_id)
    directory = config.config_dir().absolute()
    if directory == Path.home() / ".config" / "pair":
        return argv
    return ("/usr/bin/env", f"PAIR_CONFIG_DIR={directory}", *argv)


def login_user(space: Space) -> str:
    return (space.container.login_user if space.container else "") or "root"


def ssh_options(
    space: Space, identities: Sequence[Path] = (), fdpass: tuple[str, ...] | None = None
) -> list[tuple[str, Value]]:
    """The ssh_config options for one (checked) Space, in order; `identities` are the private keys
    of the person's registered keys found on this machine (offered alone, IdentitiesOnly). The
    ProxyCommand is `pair spaces proxy`, or `fdpass` with ProxyUseFdpass (`pair spaces connect`'s
    own stream, pair.cli.handoff).

    ControlPersist is off: with it, ssh sends a ProxyCommand's stderr to /dev/null (sshconnect.c),
    and the person would never read pair's reason for a refusal. Connections still share a master
    while its first session lasts when the person's own config asks for ControlMaster."""
    options: list[tuple[str, Value]] = [
        ("User", login_user(space)),
        ("ProxyCommand", fdpass or proxy_command(space.id)),
        *([("ProxyUseFdpass", "yes")] if fdpass else []),
        ("HostKeyAlias", known_hosts.alias(space.id)),
        ("UserKnownHostsFile", str(known_hosts.path())),
        ("StrictHostKeyChecking", "yes"),
        ("ServerAliveInterval", "30"),
        ("ControlPersist", "no"),
    ]
    options += [("IdentityFile", str(path)) for path in identities]
    if identities:
        options.append(("IdentitiesOnly", "yes"))
    return options


def write_known_hosts(spaces: list[Space]) -> None:
    """Pin every visible Space's host keys under its alias; a Space whose keys do not parse gets
    no pin (ssh then refuses it rather than trusting anything)."""
    from pair.api.grammar import Invalid

    pins: dict[str, list[str]] = {}
    for space in spaces:
        try:
            pins[space.id] = known_hosts.lines_for(space.id, space.container.host_keys if space.container else [])
        except Invalid:
            continue  # Client.spaces already left such a Space out, with a warning
    known_hosts.write(pins)
