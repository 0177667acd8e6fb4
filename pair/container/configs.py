"""The sshd and supervisord configuration a Space runs with: the text pair's installer
(pair.container.install, run by install.sh) writes, and the tests start sshd and supervisord with."""

from __future__ import annotations

import re
import subprocess

# The secrets a container's environment holds for `pair spaces bootstrap` only (a Codespaces
# secret, a Devfile env entry): nothing pair starts afterwards carries them, so no long-lived
# process (supervisord, sshd, the agent) shows them in /proc/PID/environ. (The container's own
# first process keeps its environment: docs/operations.md#space-keys says who can read it.)
BOOTSTRAP_SECRETS = ("PAIR_SPACE_KEY", "PAIR_SPACE_TOKEN")
WITHOUT_SECRETS = "/usr/bin/env " + " ".join(f"-u {name}" for name in BOOTSTRAP_SECRETS)
SUPERVISORD_CONF_PATH = "/etc/supervisor/supervisord.conf"
# The lifecycle command that starts supervisord (postStartCommand, the Devfile's start-supervisord).
START_SUPERVISORD = f"{WITHOUT_SECRETS} supervisord -c {SUPERVISORD_CONF_PATH}"
# A command line that starts supervisord, whatever else it does: pair's command from before
# START_SUPERVISORD (`supervisord -c /etc/supervisor/supervisord.conf`) as much as today's. `pair
# spaces init` counts one as present, so a project never starts two supervisords at once.
STARTS_SUPERVISORD = re.compile(r"(?:^|[\s;&|/])supervisord(?:\s|$)")

# What install.sh puts on PATH as `supervisord` (/usr/local/bin, unless the image has its own):
# pair's supervisord without the bootstrap secrets, however it is started. A lifecycle command
# written before START_SUPERVISORD (`supervisord -c …`, kept in projects' devcontainer.json files
# and Devfiles) hands supervisord its whole environment; this is the one place every command passes.
SUPERVISORD_LAUNCHER = """\
#!/bin/sh
# pair: supervisord without {names}, whatever command starts it (an older
# `supervisord -c ...` too): only `pair spaces bootstrap` reads them. Written by install.sh.
unset {names}
exec {supervisord} "$@"
"""


def supervisord_launcher(supervisord: str) -> str:
    """The `supervisord` script install.sh puts on PATH: it runs the supervisord at path `supervisord`
    (pair's virtualenv's) with BOOTSTRAP_SECRETS removed from its environment (POSIX `unset`)."""
    return SUPERVISORD_LAUNCHER.format(names=" ".join(BOOTSTRAP_SECRETS), supervisord=supervisord)


SSHD_CONFIG = """\
# pair: sshd for the Space, on its own port with its own host key. Written by install.sh.
# Only keys `pair verify` vouches for get in: the Space's owner and the people it is shared with.
Port {port}
HostKey {prefix}/sshd/ssh_host_ed25519_key
PidFile {prefix}/sshd/sshd.pid
AuthorizedKeysFile none
AuthorizedKeysCommand {prefix}/pair verify %u %k %t
AuthorizedKeysCommandUser {command_user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PermitEmptyPasswords no
UsePAM no
AllowTcpForwarding yes
AllowAgentForwarding yes
X11Forwarding no
PrintMotd no
ClientAliveInterval 30
ClientAliveCountMax 3
# Every connection through pair's relay reaches sshd from 127.0.0.1 (the agent dials it), so
# per-source limits would make all teammates share one budget. OpenSSH's default MaxStartups
# 10:30:100 starts refusing at 10 connections still in their handshake: with 50 people
# connecting at once a quarter were dropped. The broker lets through only people the Space is
# shared with, so allow 100 handshakes at once and throttle only past that. A handshake that
# stalls (nobody types the key's passphrase) gives its place up after LoginGraceTime.
MaxStartups 100:30:200
LoginGraceTime 60
{per_source}LogLevel INFO
Subsystem sftp internal-sftp
"""
# OpenSSH 9.8 added per-source penalties (on by default): one teammate's failed logins would
# lock everyone out, since all arrive from loopback. Older sshd refuse the keyword, so it is
# written only for the version install.sh finds.
PER_SOURCE_PENALTIES = (9, 8)
PER_SOURCE_EXEMPT = """\
# Relayed connections all come from loopback: penalize other sources only (OpenSSH >= 9.8).
PerSourcePenaltyExemptList 127.0.0.1/32,::1/128
"""

SUPERVISORD_CONF = """\
; supervisord for pair (written by install.sh because none existed). Programs live in conf.d/.
[unix_http_server]
file={run_dir}/supervisor.sock
chmod=0700

[supervisord]
logfile={log_dir}/supervisord.log
pidfile={run_dir}/supervisord.pid
childlogdir={log_dir}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run_dir}/supervisor.sock

[include]
files = {conf_d}/*.conf
"""

PROGRAMS = """\
; pair: the Space's sshd and its agent. Written by install.sh.
[program:sshd]
; /run is often a fresh tmpfs when the container starts: sshd needs its privilege-separation dir.
command={without_secrets} /bin/sh -c 'mkdir -p /run/sshd && exec {sshd} -D -e -f {sshd_config}'

autostart=true
autorestart=true
startsecs=1
redirect_stderr=true
stdout_logfile={log_dir}/pair-sshd.log

[program:pair-agent]
; Whoever started supervisord, sshd and the agent never carry PAIR_SPACE_KEY or PAIR_SPACE_TOKEN.
command={without_secrets} {prefix}/pair agent
autostart=true
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs=10
redirect_stderr=true
stdout_logfile={log_dir}/pair-agent.log
"""


def sshd_config(
    prefix: str, port: int = 2222, command_user: str = "root", openssh: tuple[int, int] | None = None
) -> str:
    """pair's sshd config for the sshd of version `openssh` (major, minor; None: one older than
    9.8, so no keyword newer than Debian 12's 9.2 is written)."""
    per_source = PER_SOURCE_EXEMPT if openssh is not None and openssh >= PER_SOURCE_PENALTIES else ""
    return SSHD_CONFIG.format(prefix=prefix, port=port, command_user=command_user, per_source=per_source)


def openssh_version(sshd: str) -> tuple[int, int] | None:
    """(major, minor) of the OpenSSH server at path `sshd`, from its `-V` output (newer sshd print
    their version; older ones reject -V with a usage text that names it); None if not found."""
    try:
        done = subprocess.run([sshd, "-V"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stdout + done.stderr)
    return (int(found.group(1)), int(found.group(2))) if found else None


def supervisord_conf(conf_d: str, run_dir: str = "/var/run", log_dir: str = "/var/log/supervisor") -> str:
    return SUPERVISORD_CONF.format(conf_d=conf_d, run_dir=run_dir, log_dir=log_dir)


def programs(
    prefix: str, sshd_config_path: str, sshd: str = "/usr/sbin/sshd", log_dir: str = "/var/log/supervisor"
) -> str:
    return PROGRAMS.format(
        prefix=prefix, sshd=sshd, sshd_config=sshd_config_path, log_dir=log_dir, without_secrets=WITHOUT_SECRETS
    )
