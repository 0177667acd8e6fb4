"""Where install.sh puts pair's files (docs/install.md, "What it does").

Fixed places outside PREFIX: /etc/ssh/pair_sshd_config (pair's own sshd config; the system's is
untouched), /etc/supervisor (supervisord.conf only if none exists; conf.d/pair.conf always),
/var/log/supervisor, the /usr/local/bin links, /run/sshd and /etc/shadow. `Layout.under(root)`
moves every one of them below `root`, which is how the unit tests run a plan for real.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from pair.container.home import Home

DEFAULT_PREFIX = Path("/opt/pair")


@dataclass(frozen=True)
class Layout:
    prefix: Path = DEFAULT_PREFIX
    sshd_config: Path = Path("/etc/ssh/pair_sshd_config")
    supervisor_dir: Path = Path("/etc/supervisor")
    log_dir: Path = Path("/var/log/supervisor")
    bin_dir: Path = Path("/usr/local/bin")
    run_sshd: Path = Path("/run/sshd")  # sshd's privilege-separation directory
    run_dir: Path = Path("/var/run")  # supervisord's socket and pid file
    shadow: Path = Path("/etc/shadow")

    @classmethod
    def under(cls, root: Path, prefix: Path = DEFAULT_PREFIX) -> Layout:
        """Every path of the default layout (with `prefix`) moved below `root`."""
        base = replace(cls(), prefix=prefix)
        moved = {f.name: root / str(getattr(base, f.name)).lstrip("/") for f in fields(cls)}
        return cls(**moved)

    @property
    def home(self) -> Home:
        return Home(self.prefix)

    @property
    def supervisord_conf(self) -> Path:
        return self.supervisor_dir / "supervisord.conf"

    @property
    def conf_d(self) -> Path:
        return self.supervisor_dir / "conf.d"

    @property
    def programs_conf(self) -> Path:
        return self.conf_d / "pair.conf"

    @property
    def venv(self) -> Path:
        return self.prefix / "venv"

    @property
    def supervisorctl(self) -> Path:
        return self.venv / "bin" / "supervisorctl"

    @property
    def launcher(self) -> Path:
        return self.prefix / "pair"

    @property
    def host_key(self) -> Path:
        return self.prefix / "sshd" / "ssh_host_ed25519_key"

    @property
    def created(self) -> Path:
        """What install.sh created outside PREFIX, one path a line: --uninstall removes those."""
        return self.prefix / "created-by-install.sh"
