"""The sshd and supervisord configuration a Space runs with, written by install.sh through
`python -m pair.container.configs`, and by the tests through the same functions."""

from __future__ import annotations

import argparse
import sys

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
LogLevel INFO
Subsystem sftp internal-sftp
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
command=/bin/sh -c 'mkdir -p /run/sshd && exec {sshd} -D -e -f {sshd_config}'

autostart=true
autorestart=true
startsecs=1
redirect_stderr=true
stdout_logfile={log_dir}/pair-sshd.log

[program:pair-agent]
command={prefix}/pair agent
autostart=true
autorestart=true
startsecs=1
stopsignal=TERM
stopwaitsecs=10
redirect_stderr=true
stdout_logfile={log_dir}/pair-agent.log
"""


def sshd_config(prefix: str, port: int = 2222, command_user: str = "root") -> str:
    return SSHD_CONFIG.format(prefix=prefix, port=port, command_user=command_user)


def supervisord_conf(conf_d: str, run_dir: str = "/var/run", log_dir: str = "/var/log/supervisor") -> str:
    return SUPERVISORD_CONF.format(conf_d=conf_d, run_dir=run_dir, log_dir=log_dir)


def programs(
    prefix: str, sshd_config_path: str, sshd: str = "/usr/sbin/sshd", log_dir: str = "/var/log/supervisor"
) -> str:
    return PROGRAMS.format(prefix=prefix, sshd=sshd, sshd_config=sshd_config_path, log_dir=log_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pair.container.configs", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("sshd")
    s.add_argument("--prefix", required=True)
    s.add_argument("--port", type=int, default=2222)
    s.add_argument("--command-user", default="root")
    d = sub.add_parser("supervisord")
    d.add_argument("--conf-d", required=True)
    d.add_argument("--run-dir", default="/var/run")
    d.add_argument("--log-dir", default="/var/log/supervisor")
    p = sub.add_parser("programs")
    p.add_argument("--prefix", required=True)
    p.add_argument("--sshd-config", required=True)
    p.add_argument("--sshd", default="/usr/sbin/sshd")
    p.add_argument("--log-dir", default="/var/log/supervisor")
    args = parser.parse_args(argv)
    if args.what == "sshd":
        if not 1 <= args.port <= 65535:
            parser.error("--port must be 1-65535")
        sys.stdout.write(sshd_config(args.prefix, args.port, args.command_user))
    elif args.what == "supervisord":
        sys.stdout.write(supervisord_conf(args.conf_d, args.run_dir, args.log_dir))
    else:
        sys.stdout.write(programs(args.prefix, args.sshd_config, args.sshd, args.log_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
