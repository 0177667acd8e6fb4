"""What a container says about itself at bootstrap: where it runs and how big it is."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path

from pair import __version__
from pair.api import fields
from pair.api.models import ContainerFacts, Platform, WorkspaceFolder


def detect_platform(env: Mapping[str, str]) -> Platform:
    if env.get("CODESPACES") == "true" or env.get("CODESPACE_NAME"):
        return "codespaces"
    # DevWorkspace operator (Eclipse Che, OpenShift Dev Spaces) and other Devfile runners.
    if env.get("DEVWORKSPACE_ID") or env.get("CHE_WORKSPACE_ID") or env.get("PROJECTS_ROOT"):
        return "devfile"
    if env.get("REMOTE_CONTAINERS") or env.get("DEVCONTAINER") or env.get("REMOTE_CONTAINERS_IPC"):
        return "devcontainer"
    return "generic"


def raw_container_name(env: Mapping[str, str] | None = None) -> str:
    """This container's own name: CODESPACE_NAME (Codespaces), DEVWORKSPACE_NAME (DevWorkspace
    operator: Che, OpenShift Dev Spaces), else the host name. A rebuilt container keeps it, which
    is how the broker recognises it as the same Space (pair.api.grammar.container_identity)."""
    env = os.environ if env is None else env
    for variable in ("CODESPACE_NAME", "DEVWORKSPACE_NAME"):
        if env.get(variable, "").strip():
            return env[variable].strip()
    return socket.gethostname()


def container_name(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The name a Space key's Space takes from this container (raw_container_name made to fit the
    Space name rule: pair.api.grammar.space_name_from), and the digest of the raw name that
    tells it apart from containers whose names clean to the same (container_digest)."""
    from pair.api.grammar import container_digest, space_name_from

    raw = raw_container_name(env)
    return space_name_from(raw), container_digest(raw)


def cpu_count(cgroup: Path = Path("/sys/fs/cgroup")) -> float:
    """CPUs this container may use: the cgroup v2 quota if there is one, else the affinity mask."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return round(int(quota) / int(period), 2)
    except (OSError, ValueError):
        pass
    return float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0)


def memory_bytes(cgroup: Path = Path("/sys/fs/cgroup"), meminfo: Path = Path("/proc/meminfo")) -> int:
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            return int(limit)
    except (OSError, ValueError):
        pass
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def disk_bytes(path: str = "/") -> int:
    try:
        return shutil.disk_usage(path).total
    except OSError:
        return 0


def login_user(env: Mapping[str, str], ssh_user_file: Path | None = None) -> str:
    """Who teammates log in as: PAIR_SSH_USER, else install.sh --ssh-user, else whoever runs this."""
    if env.get("PAIR_SSH_USER"):
        return env["PAIR_SSH_USER"]
    try:
        configured = ssh_user_file.read_text().strip() if ssh_user_file else ""
    except OSError:
        configured = ""
    return configured or getpass.getuser()


def host_keys(pub_file: Path) -> list[str]:
    try:
        line = pub_file.read_text().split()
    except OSError:
        return []
    return [" ".join(line[:2])] if len(line) >= 2 else []


def workspace_folder(env: Mapping[str, str]) -> str | None:
    """The folder a container says its project is in, if it exists: Codespaces'
    `CODESPACE_VSCODE_FOLDER` (else /workspaces/REPO from `GITHUB_REPOSITORY`), a Devfile's
    `PROJECT_SOURCE`, `PROJECTS_ROOT` or /projects (devfile.io: projects are cloned there)."""
    candidates = [env.get("CODESPACE_VSCODE_FOLDER", "")]
    platform = detect_platform(env)
    if platform == "codespaces" and env.get("GITHUB_REPOSITORY"):
        candidates.append("/workspaces/" + env["GITHUB_REPOSITORY"].rpartition("/")[2])
    if platform == "devfile":
        candidates += [env.get("PROJECT_SOURCE", ""), env.get("PROJECTS_ROOT", ""), "/projects"]
    for folder in candidates:
        if folder and os.path.isabs(folder) and os.path.isdir(folder):
            return folder
    return None


def collect(
    host_key_file: Path, env: Mapping[str, str] | None = None, ssh_user_file: Path | None = None
) -> ContainerFacts:
    env = os.environ if env is None else env
    return ContainerFacts(
        hostname=socket.gethostname(),
        platform=detect_platform(env),
        cpus=cpu_count(),
        memory_bytes=memory_bytes(),
        disk_bytes=disk_bytes(),
        login_user=login_user(env, ssh_user_file),
        host_keys=host_keys(host_key_file),
        pair_version=__version__,
        workspace_folder=reported_folder(workspace_folder(env)),
    )


def reported_folder(folder: str | None) -> str:
    """The workspace folder as the facts carry it: only one that fits its type's grammar
    (pair.api.models.WorkspaceFolder, as the broker checks it: pair.api.fields.check_facts), so an
    odd path does not cost the container its bootstrap or heartbeats."""
    return folder if folder and fields.grammar_refusal(WorkspaceFolder, folder) is None else ""
