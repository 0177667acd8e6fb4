#!/bin/bash
# The Feature with its default options, in the devcontainers test-lib style. Runs inside a container
# built by `devcontainer features test` (needs Docker; see scripts/package-feature.sh ... test).
set -e

# shellcheck source=/dev/null
source dev-container-features-test-lib

CONF=/etc/supervisor/supervisord.conf

prefix_is_root_owned() { [ "$(stat -c %u:%a /opt/pair)" = 0:755 ]; }
sshd_accepts_config() { "$(command -v sshd || echo /usr/sbin/sshd)" -t -f /etc/ssh/pair_sshd_config; }
has_programs() {
    grep -q '^\[program:sshd\]' /etc/supervisor/conf.d/pair.conf &&
        grep -q '^\[program:pair-agent\]' /etc/supervisor/conf.d/pair.conf
}
login_user_unlocked() {
    field=$(awk -F: -v u="${_REMOTE_USER:-root}" '$1 == u { print $2 }' /etc/shadow)
    case $field in "!"*) return 1 ;; esac
}
running() { supervisorctl -c "$CONF" status "$1" | grep -q RUNNING; }
supervisord_runs_both() {
    supervisord -c "$CONF"
    deadline=$((SECONDS + 15))
    until running sshd && running pair-agent; do
        [ "$SECONDS" -lt "$deadline" ] || break
        sleep 0.2
    done
    running sshd && running pair-agent
    status=$?
    supervisorctl -c "$CONF" shutdown >/dev/null
    return "$status"
}

check "launcher is executable" test -x /opt/pair/pair
check "pair runs" /opt/pair/pair --version
check "/opt/pair is root-owned 0755 (sshd insists)" prefix_is_root_owned
check "host key" test -s /opt/pair/sshd/ssh_host_ed25519_key.pub
check "privilege separation directory" test -d /run/sshd
check "sshd config listens on 2222" grep -qx "Port 2222" /etc/ssh/pair_sshd_config
check "sshd config runs pair verify" grep -qx "AuthorizedKeysCommand /opt/pair/pair verify %u %k %t" /etc/ssh/pair_sshd_config
check "sshd accepts its config" sshd_accepts_config
check "supervisord on PATH" supervisord --version
check "supervisorctl on PATH" command -v supervisorctl
check "supervisord.conf includes conf.d" grep -q "conf.d/\*.conf" "$CONF"
check "programs sshd and pair-agent" has_programs
check "login user is not locked" login_user_unlocked
check "supervisord runs sshd and the agent" supervisord_runs_both

reportResults
