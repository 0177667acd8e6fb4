"""install.sh's plans once pair is in its virtualenv: what to create, write, link and run.

`install_plan` and `uninstall_plan` read the files the plan is about (to say `ok:` for what is
already right) and take everything else they need to know about the system from a `Host`, so a
test gives them any system it likes. Neither changes anything: `steps.carry_out` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pair.container import configs, launcher
from pair.container.install import login
from pair.container.install.layout import Layout
from pair.container.install.steps import (
    Check,
    Link,
    MakeDir,
    Note,
    Ok,
    Remove,
    RemoveDir,
    RemoveTree,
    Run,
    SetMode,
    Step,
    Warn,
    WriteFile,
    recorded,
)

SUPERVISOR_PROGRAMS = ("supervisord", "supervisorctl")  # linked into bin_dir unless on PATH
DEFAULT_SSHD = "/usr/sbin/sshd"  # where the distributions' openssh-server puts it


@dataclass(frozen=True)
class Options:
    """What install.sh was asked for, validated. `token` is normalized (pair.api.tokens), ""
    for none; `token_source` names where it came from (`--token`, `PAIR_SPACE_TOKEN`)."""

    ssh_port: int = 2222
    ssh_user: str = "root"
    token: str = ""
    token_source: str = ""
    broker_url: str = ""
    space_key: str = ""  # normalized (pair.api.tokens.SPACE_KEY), "" for none
    space_key_source: str = ""
    keep_space_key: bool = False  # write it for the first bootstrap (it came from an option, not the environment)


@dataclass(frozen=True)
class Host:
    """The facts about the system a plan needs besides its files.

    `sshd`: the sshd install.sh found (its version decides the config's keywords: `openssh`,
    (major, minor) or None); `on_path`: where supervisord and supervisorctl already are on PATH;
    `user_exists`: whether the login user exists (install.sh refused a real run without it);
    `supervisord_running`: whether a supervisord answers on the layout's supervisord.conf.
    """

    sshd: str = DEFAULT_SSHD
    openssh: tuple[int, int] | None = None
    on_path: Mapping[str, str] = field(default_factory=dict)
    user_exists: bool = True
    supervisord_running: bool = False

    @classmethod
    def probe(cls, layout: Layout, sshd: str, user: str) -> Host:
        """Ask this system (read-only: `sshd -V`, `supervisorctl pid`, the user database)."""
        import pwd

        sshd = sshd or DEFAULT_SSHD
        try:
            pwd.getpwnam(user)
            exists = True
        except KeyError:
            exists = False
        return cls(
            sshd=sshd,
            openssh=configs.openssh_version(sshd),
            on_path={p: found for p in SUPERVISOR_PROGRAMS if (found := shutil.which(p))},
            user_exists=exists,
            supervisord_running=supervisord_running(layout),
        )


def supervisord_running(layout: Layout) -> bool:
    """Whether `supervisorctl pid` reaches a supervisord through the layout's supervisord.conf."""
    if not os.access(layout.supervisorctl, os.X_OK):
        return False
    try:
        done = subprocess.run(
            [str(layout.supervisorctl), "-c", str(layout.supervisord_conf), "pid"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


class _Plan:
    """Steps in the making, with the comparisons that decide between `ok:` and a change."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def add(self, *steps: Step) -> None:
        self.steps.extend(steps)

    def directory(self, path: Path, mode: int, *, record: bool = False) -> None:
        if not path.is_dir():
            self.add(MakeDir(does=f"create {path}", path=path, mode=mode, record=path if record else None))

    def file(
        self,
        path: Path,
        content: str,
        mode: int,
        *,
        what: str = "",
        detail: str = "",
        record: bool = False,
        check: tuple[str, ...] = (),
        refused: str = "",
    ) -> bool:
        """Write `path` unless it holds `content` with `mode` already; whether it changes.
        `what` names it in messages ("the launcher "), `detail` follows its name."""
        named = f"{what}{path}"
        current = _read(path)
        recorded_as = path if record else None
        if current == content.encode():
            if _mode(path) == mode:
                self.add(Ok(f"{named} is up to date"))
                return False
            self.add(SetMode(does=f"set {named} to mode {mode:o}", path=path, mode=mode, record=recorded_as))
            return True
        verb = "update" if current is not None else "write"
        self.add(
            WriteFile(
                does=f"{verb} {named}{detail}",
                path=path,
                content=content,
                mode=mode,
                check=check,
                refused=refused,
                record=recorded_as,
            )
        )
        return True


def install_plan(options: Options, layout: Layout, host: Host) -> list[Step]:
    """Everything after the virtualenv: the token's verdict, supervisord's links, the launcher,
    the host key, the sshd config (checked with `sshd -t` before it replaces anything), the
    supervisord configs, the login user, the settings files and, if supervisord already runs,
    loading the new programs into it. Reads files; changes nothing."""
    plan = _Plan()
    home = layout.home
    if options.token:
        plan.add(Ok(f"the Space token from {options.token_source or 'standard input'} is well-formed"))
    if options.space_key:
        plan.add(Ok(f"the Space key from {options.space_key_source} is well-formed"))

    for program in SUPERVISOR_PROGRAMS:
        link = layout.bin_dir / program
        target = layout.venv / "bin" / program
        ours = link in recorded(layout.created) or (link.is_symlink() and _points_into(link, layout.prefix))
        if program in host.on_path and not (ours and Path(host.on_path[program]) == link):
            plan.add(Ok(f"{program} is on PATH ({host.on_path[program]})"))
        elif program == "supervisord" and (ours or not os.path.lexists(link)):
            # A script, not a link: whatever command starts it, supervisord never carries the
            # bootstrap secrets (a link from an older install.sh is replaced).
            plan.file(
                link,
                configs.supervisord_launcher(str(target)),
                0o755,
                what="the supervisord launcher ",
                detail=f" (runs {target} without {' or '.join(configs.BOOTSTRAP_SECRETS)})",
                record=True,
            )
        elif os.path.lexists(link):
            plan.add(Ok(f"{link} exists"))
        else:
            plan.add(Link(does=f"link {link} -> {target}", path=link, target=target, record=link))

    plan.file(layout.launcher, launcher.text(layout.prefix), 0o755, what="the launcher ")

    plan.directory(layout.host_key.parent, 0o755)
    public = layout.host_key.with_name(layout.host_key.name + ".pub")
    if layout.host_key.is_file() and public.is_file():
        plan.add(Ok(f"sshd host key {layout.host_key}"))
    else:
        keygen = ("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pair-space", "-f", str(layout.host_key))
        does = f"generate the sshd host key {layout.host_key}"
        plan.add(Run(does=does, argv=keygen, replaces=(layout.host_key, public)))
    plan.directory(layout.run_sshd, 0o755)

    sshd_text = configs.sshd_config(str(layout.prefix), options.ssh_port, openssh=host.openssh)
    sshd_changed = plan.file(
        layout.sshd_config,
        sshd_text,
        0o644,
        detail=f" (port {options.ssh_port}) and check it with sshd -t",
        check=(host.sshd, "-t", "-f"),
        refused="sshd rejects the config pair rendered",
    )
    if not sshd_changed:
        plan.add(Check((host.sshd, "-t", "-f", str(layout.sshd_config)), f"sshd rejects {layout.sshd_config}"))

    supervisor_changed = _supervisor(plan, layout, host)

    if host.user_exists:  # install.sh refused a real run without the user, and a dry run said so
        plan.add(*login.plan(options.ssh_user, layout.shadow))
    plan.file(home.ssh_user_file, options.ssh_user + "\n", 0o644)
    if options.token:
        plan.file(home.bootstrap_token_file, options.token + "\n", 0o600)
    if options.space_key and options.keep_space_key:
        plan.file(
            home.space_key_file, options.space_key + "\n", 0o600, detail=" (the Space key, for the first bootstrap)"
        )
    elif options.space_key:
        plan.add(Ok(f"the Space key stays in {options.space_key_source} only: bootstrap reads it there"))
    if options.broker_url:
        plan.file(home.broker_url_file, options.broker_url + "\n", 0o644)
    plan.file(home.ssh_port_file, f"{options.ssh_port}\n", 0o644)  # the agent dials sshd there

    if host.supervisord_running and (supervisor_changed or sshd_changed):
        update = (str(layout.supervisorctl), "-c", str(layout.supervisord_conf), "update")
        plan.add(
            Run(
                does="load the new programs into the running supervisord (supervisorctl update)",
                argv=update,
                on_failure="supervisorctl update failed",
            )
        )
        if sshd_changed:
            plan.add(Note("note: run `supervisorctl restart sshd` to apply the new sshd config"))
    return plan.steps


def _supervisor(plan: _Plan, layout: Layout, host: Host) -> bool:
    """supervisord.conf if there is none (or install.sh wrote it), conf.d/pair.conf always."""
    for directory in (layout.supervisor_dir, layout.conf_d, layout.log_dir):
        plan.directory(directory, 0o755, record=True)
    conf = layout.supervisord_conf
    changed = False
    if not conf.exists() or conf in recorded(layout.created):
        text = configs.supervisord_conf(str(layout.conf_d), str(layout.run_dir), str(layout.log_dir))
        changed = plan.file(conf, text, 0o644, record=True)
    else:
        existing = (_read(conf) or b"").decode("utf-8", "replace")
        if not re.search(r"^\s*\[include\]", existing, re.MULTILINE):
            plan.add(
                Warn(f"{conf} (not ours) has no [include] section, so supervisord will NOT run pair's sshd and agent."),
                Warn(f"Add these two lines to it:  [include]  and  files = {layout.conf_d}/*.conf"),
            )
        elif not re.search(rf"^\s*files\s*=.*{re.escape(str(layout.conf_d))}/", existing, re.MULTILINE):
            plan.add(
                Warn(
                    f"{conf} (not ours) has an [include] that may not cover {layout.conf_d}/*.conf; "
                    f"pair's programs are in {layout.programs_conf}."
                )
            )
        else:
            plan.add(Ok(f"{conf} (not ours) includes {layout.conf_d}/*.conf"))
    programs = configs.programs(str(layout.prefix), str(layout.sshd_config), host.sshd, str(layout.log_dir))
    return plan.file(layout.programs_conf, programs, 0o644) or changed


def uninstall_plan(layout: Layout, host: Host) -> list[Step]:
    """Remove what install.sh installed: pair's programs first (stopping supervisord itself if
    install.sh wrote its config), the sshd config, what created-by-install.sh lists (newest
    first, so a directory comes after what was put in it; links only if they point into PREFIX;
    a directory only if nothing else is left in it), and PREFIX. The OS packages stay."""
    created = recorded(layout.created)
    ours = layout.supervisord_conf in created
    ctl = (str(layout.supervisorctl), "-c", str(layout.supervisord_conf))
    steps: list[Step] = []
    gone: set[Path] = set()

    def remove(path: Path) -> None:
        if path not in gone and (path.is_symlink() or path.is_file()):
            steps.append(Remove(does=f"remove {path}", path=path))
            gone.add(path)

    remove(layout.programs_conf)
    if host.supervisord_running:
        if ours:
            does = "stop supervisord (supervisorctl shutdown): install.sh started its config"
            steps.append(Run(does=does, argv=(*ctl, "shutdown")))
        else:
            steps.append(Run(does="stop pair's sshd and agent (supervisorctl update)", argv=(*ctl, "update")))
    remove(layout.sshd_config)
    for path in reversed(created):
        if path.is_symlink():
            if _points_into(path, layout.prefix):
                remove(path)
        elif path.is_file():
            remove(path)
        elif path.is_dir():
            if path == layout.log_dir and ours:
                for log in sorted([*path.glob("supervisord.log*"), *path.glob("pair-*.log*")]):
                    remove(log)
            if all(child in gone for child in path.iterdir()):
                steps.append(RemoveDir(does=f"remove the directory {path} (if empty)", path=path))
                gone.add(path)
    for program in SUPERVISOR_PROGRAMS:
        link = layout.bin_dir / program
        if link.is_symlink() and _points_into(link, layout.prefix):
            remove(link)
    if layout.prefix.is_dir():
        steps.append(RemoveTree(does=f"remove {layout.prefix}", path=layout.prefix))
    return steps


def _points_into(link: Path, prefix: Path) -> bool:
    return os.readlink(link).startswith(f"{prefix}/")


def _read(path: Path) -> bytes | None:
    """The bytes of the regular file `path` (following links), or None if there is none."""
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777
