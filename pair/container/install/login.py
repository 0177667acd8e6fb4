"""The login user's password field in /etc/shadow, as sshd without PAM reads it.

With `UsePAM no` sshd refuses an account whose password field starts with "!" (locked), even
for a key login (OpenSSH auth.c, allowed_user). A field with no password behind the "!" ("!",
"!!", "!*", Fedora's "!locked": what useradd and image builders leave) becomes "*": still no
password and never a password login, but key logins work. A field that keeps a password hash
behind the "!" ("!$6$…", see crypt(5): hashes hold "$") is a password its owner locked on purpose:
left alone, with a warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from pair.container.install.steps import Change, InstallError, Ok, Step, Warn

SYSTEM_SHADOW = Path("/etc/shadow")
NO_PASSWORD = "*"  # noqa: S105 - the field that holds no password (shadow(5))


class Field(Enum):
    USABLE = "usable"  # not locked: key logins work
    LOCKED = "locked"  # "!" and no password behind it: becomes "*"
    LOCKED_HASH = "locked hash"  # "!" before a password hash: left alone


def classify(field: str) -> Field:
    if not field.startswith("!"):
        return Field.USABLE
    return Field.LOCKED_HASH if "$" in field else Field.LOCKED


def password_field(shadow_text: str, user: str) -> str | None:
    """The second field of `user`'s line (shadow(5)), or None if it has none."""
    for line in shadow_text.split("\n"):
        parts = line.split(":")
        if len(parts) > 1 and parts[0] == user:
            return parts[1]
    return None


def without_password(shadow_text: str, user: str) -> str:
    """`shadow_text` with `user`'s password field set to "*"; every other byte as it was."""
    lines = shadow_text.split("\n")
    for i, line in enumerate(lines):
        parts = line.split(":")
        if len(parts) > 1 and parts[0] == user:
            parts[1] = NO_PASSWORD
            lines[i] = ":".join(parts)
    return "\n".join(lines)


@dataclass(frozen=True, kw_only=True)
class Unlock(Change):
    """Set `user`'s password field to "*": with usermod on the system's /etc/shadow (it takes
    the password-file lock), else (busybox has no usermod; tests re-root the file) by rewriting
    the file beside itself with its owner and mode, then renaming it over the old one."""

    user: str
    shadow: Path

    def apply(self) -> None:
        usermod = shutil.which("usermod")
        if usermod and self.shadow == SYSTEM_SHADOW:
            done = subprocess.run([usermod, "-p", NO_PASSWORD, self.user], stdin=subprocess.DEVNULL, check=False)
            if done.returncode != 0:
                raise InstallError(f"usermod failed (exit status {done.returncode}) while trying to {self.does}.")
            return
        st = self.shadow.stat()
        new = self.shadow.with_name(self.shadow.name + ".pair-new")
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_bytes(without_password(_text(self.shadow.read_bytes()), self.user)))
        os.chown(new, st.st_uid, st.st_gid)
        os.chmod(new, st.st_mode & 0o7777)
        os.replace(new, self.shadow)


def plan(user: str, shadow: Path) -> list[Step]:
    """What makes sure `user` (who exists) can log in with a key."""
    try:
        text = _text(shadow.read_bytes())
    except OSError:
        return [Warn(f"cannot read {shadow} (not root); a real run makes sure {user} is not locked")]
    field = password_field(text, user) or ""
    kind = classify(field)
    if kind is Field.LOCKED_HASH:
        refused = f"{user} has a locked password; sshd (UsePAM no) refuses it even with a key."
        return [Warn(f"{refused} Unlock it: usermod -U {user}")]
    if kind is Field.LOCKED:
        return [
            Unlock(
                does=f'unlock {user} for key logins (its password field "{field}" becomes "*": still no password)',
                user=user,
                shadow=shadow,
            )
        ]
    return [Ok(f"{user} can log in with a key")]


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")  # every byte comes back as it was


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")
