"""Whether a Space lets people in now, and if not, the sentence that says why: the same words from
`pair spaces connect` (before it starts ssh) and from the broker's relay (when it refuses a
tunnel), decided from the wire Space alone."""

from __future__ import annotations

from typing import NamedTuple

from pair.api.models import ErrorCode, Space


class Refusal(NamedTuple):
    message: str
    hint: str
    code: ErrorCode  # the broker's error code: not_running, ssh_down


def refusal(space: Space) -> Refusal | None:
    """Why nobody can get into `space` now; None if the relay should try (running), or wait a few
    seconds for it (starting, with sshd not known to have failed)."""
    if space.state == "running":
        return None
    if space.state == "starting":
        return ssh_down(space) if ssh_failure(space) else None
    hint = (
        f"Start SSH with `pair spaces up --space {space.name}`; if its container is off, start it first."
        if space.role == "owner"
        else f"Ask its owner ({space.owner}) to start it."
    )
    return Refusal(f'The Space "{space.name}" is not running ({space.state}).', hint, "not_running")


def ssh_down(space: Space) -> Refusal:
    """The Space's agent is connected, but its sshd is not serving: say what the agent saw."""
    reason = ssh_failure(space) or "sshd is not answering."
    if space.role == "owner":
        hint = (
            "Fix it in the container (supervisord keeps sshd's log as pair-sshd.log); "
            f"then `pair spaces up --space {space.name}` starts sshd again."
        )
    else:
        hint = f"Ask its owner ({space.owner}) to fix it; `pair spaces list` shows when it is running again."
    return Refusal(f'SSH is not being served in "{space.name}": {reason}', hint, "ssh_down")


def ssh_failure(space: Space) -> str:
    """Why sshd does not serve in a Space that should serve SSH, as its agent reported it; "" if
    it serves, is still starting, or nothing is known."""
    ssh = space.ssh
    if space.state != "starting" or ssh is None or ssh.serving or ssh.settling:
        return ""
    return ssh.reason or "sshd is not answering."
